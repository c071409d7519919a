"""The offline polymorph dataset builder: candidates, a real (tiny) build, resume, dedupe, CLI errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crystalgen.data.dataset import read_dataset
from crystalgen.prototypes import (
    BuildConfig,
    assemble_records,
    build_prototype_dataset,
    generate_candidates,
    make_chunks,
    parse_system,
)

ALB2 = "AB2_hP3_191_a_d"
ROCK_SALT = "AB_cF8_225_a_b"
BCC, FCC, ALPHA_B = "A_cI2_229_a", "A_cF4_225_a", "A_hR12_166_2h"


@pytest.fixture(autouse=True)
def _private_check_cache(tmp_path, crystalgen_env):
    crystalgen_env(cache_dir=tmp_path / "cache")


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    """One real build (TensorNet, 10 relaxations) shared by the tests below."""
    root = tmp_path_factory.mktemp("tiny")
    config = _tiny_config()
    stats = build_prototype_dataset(config, root / "tiny.jsonl.gz", root / "work", workers=0)
    return config, root, stats


def _tiny_config(**kw) -> BuildConfig:
    return BuildConfig(
        systems=["Ta-B"], max_sites=3, prototypes=[BCC, FCC, ALPHA_B, ALB2, ROCK_SALT], fmax=0.1, max_steps=80, chunk_size=3, **kw
    )


def test_parse_system_and_errors():
    assert parse_system("Ta-W-B:8") == (("Ta", "W", "B"), 8)
    assert parse_system("Ti-C", 4) == (("Ti", "C"), 4)
    for bad, message in [("Ta-Xx", "'Xx' is not an element"), ("Ta-Ta", "repeats"), ("Ta-B:x", "site limit")]:
        with pytest.raises(ValueError, match=message):
            parse_system(bad)


def test_candidates_cover_all_assignments_deterministically():
    config = BuildConfig(systems=["Ta-W-B", "Ta-B", "W-B", "Ta-W"], max_sites=4)
    candidates = generate_candidates(config)
    ids = [c["id"] for c in candidates]
    assert len(ids) == len(set(ids)) and ids == [c["id"] for c in generate_candidates(config)]
    assert {f"{ALB2}:{pair}" for pair in ("Ta-B", "B-Ta", "W-B", "B-W", "Ta-W", "W-Ta")} <= set(ids)
    ternary = [c for c in candidates if len({s["species"][0]["element"] for s in c["structure"]["sites"]}) == 3]
    assert ternary and len({c["prototype"] for c in ternary}) * 6 == len(ternary)  # all 3! orders
    assert {f"{BCC}:Ta", f"{BCC}:W", f"{BCC}:B"} <= set(ids)  # unary prototypes = elemental references
    chunks = make_chunks(candidates, 50)
    assert [cid for cid, _ in chunks] == [cid for cid, _ in make_chunks(candidates, 50)]
    with pytest.raises(ValueError, match="unknown AFLOW prototype"):
        generate_candidates(BuildConfig(systems=["Ta-B"], prototypes=["nope"]))


def test_tiny_build_formation_energies_spacegroups_and_resume(tiny_build):
    config, root, stats = tiny_build
    output = root / "tiny.jsonl.gz"
    # 8 main candidates in 3 chunks + alpha-B-type Ta and B as elemental references in 1 chunk
    assert stats["chunks_done"] == stats["chunks_total"] == 4 and stats["candidates_relaxed"] == 10
    metadata, records = read_dataset(output)
    assert metadata["complete"] and metadata["potential"] == "TensorNet-MatPES-PBE-v2025.1-PES"
    by_id = {r.id: r for r in records}
    tab2 = by_id[f"proto:{ALB2}:Ta-B"]
    assert tab2.formula == "TaB2" and tab2.spacegroup == 191
    assert -1.2 < tab2.formation_energy_per_atom < -0.5  # TensorNet: about -0.88 eV/atom (expt. -0.72)
    assert tab2.provenance["prototype"] == ALB2 and tab2.provenance["converged"]
    ta_refs = [r for r in records if r.formula == "Ta"]
    assert min(r.formation_energy_per_atom for r in ta_refs) == pytest.approx(0.0, abs=1e-6)
    assert {229, 225} <= {r.spacegroup for r in ta_refs}
    assert stats["elemental_references_eV_per_atom"]["B"] == pytest.approx(by_id[f"proto:{ALPHA_B}:B"].energy_per_atom)
    # resume: a lost chunk is recomputed, finished ones are not touched, the result is the same
    chunk_files = sorted((root / "work").glob("prototypes-*/*.json.gz"))
    mtimes = {p: p.stat().st_mtime_ns for p in chunk_files}
    chunk_files[1].unlink()
    build_prototype_dataset(config, output, root / "work", workers=0)
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in (chunk_files[0], chunk_files[2]))
    assert [r.id for r in read_dataset(output)[1]] == [r.id for r in records]


def test_duplicates_are_merged_within_a_composition(tiny_build):
    from crystalgen.prototypes import load_chunk_rows

    config, root, _ = tiny_build
    rows, meta = load_chunk_rows(next((root / "work").glob("prototypes-*")))
    twin = dict(next(r for r in rows if r["id"] == f"{ALB2}:Ta-B"), id="copy-of-TaB2")
    twin["energy_per_atom"] += 1e-4
    _, before = assemble_records(rows, meta, config)
    records, stats = assemble_records([*rows, twin], meta, config)
    assert stats["duplicates_merged"] == before["duplicates_merged"] + 1
    assert stats["records"] == before["records"]
    kept = next(r for r in records if r.id == f"proto:{ALB2}:Ta-B")
    assert kept.provenance["duplicates"] == ["copy-of-TaB2"]


def test_a_build_with_more_systems_relaxes_only_the_new_candidates(tiny_build):
    config, root, first = tiny_build
    wider = config.model_copy(update={"systems": ["Ta-B", "W-B"]})
    before = {p: p.stat().st_mtime_ns for p in (root / "work").glob("prototypes-*/*.json.gz")}
    stats = build_prototype_dataset(wider, root / "wider.jsonl.gz", root / "work", workers=0)
    assert stats["candidates_reused"] == first["candidates_relaxed"] == 10
    assert stats["candidates_relaxed"] == stats["candidates_total"] > 10
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in before.items())  # nothing relaxed twice
    old = {r.id: r for r in read_dataset(root / "tiny.jsonl.gz")[1]}
    new = {r.id: r for r in read_dataset(root / "wider.jsonl.gz")[1]}
    assert {"B2W", "TaB2"} <= {r.formula for r in new.values()}  # pymatgen writes WB2 as B2W
    tab2 = f"proto:{ALB2}:Ta-B"
    assert new[tab2].formation_energy_per_atom == old[tab2].formation_energy_per_atom


def test_cli_rejects_bad_input_without_writing(tmp_path):
    from crystalgen.cli import app, _register_core

    _register_core()
    output = tmp_path / "out.jsonl.gz"
    result = CliRunner().invoke(app, ["data", "build-prototypes", str(output), "-s", "Ta-Qq", "--work-dir", str(tmp_path)])
    assert result.exit_code == 1 and "--system" in result.output and "'Qq' is not an element" in result.output
    assert not output.exists()
    result = CliRunner().invoke(app, ["data", "build-prototypes", str(output), "--potential", "NoSuchModel", "-s", "Ta-B", "--max-sites", "1", "--workers", "0", "--work-dir", str(tmp_path)])
    assert result.exit_code == 1 and "unknown potential 'NoSuchModel'" in result.output
    assert not output.exists()


SHIPPED = Path(__file__).resolve().parents[1] / "crystalgen" / "assets" / "datasets"


def test_shipped_dataset_is_readable_and_covers_ta_w_b():
    path = SHIPPED / "aflow_prototypes_tensornet.jsonl.gz"
    metadata, records = read_dataset(path)
    assert len(records) >= 2500 and metadata["complete"] and metadata["potential"]
    formulas = {r.formula for r in records}
    assert {"TaB2", "B2W", "TaB", "BW", "Ta", "W", "B"} <= formulas  # pymatgen orders W after B (X)
    assert all(r.formation_energy_per_atom is not None and 1 <= r.spacegroup <= 230 for r in records)
    refs = metadata["stats"]["elemental_references_eV_per_atom"]
    assert -7.0 < refs["B"] < -6.0 and -12.0 < refs["Ta"] < -11.5  # alpha-B / bcc Ta, no collapsed cells
    with gzip.open(path, "rt") as fh:
        assert json.loads(fh.readline())["format"] == "crystalgen-dataset"


@pytest.mark.slow
def test_build_on_dask_workers(tmp_path):
    config = BuildConfig(systems=["W"], max_sites=1, prototypes=[BCC, FCC], reference_max_sites=1, chunk_size=1)
    stats = build_prototype_dataset(config, tmp_path / "w.jsonl", tmp_path / "work", workers=1)
    assert stats["chunks_done"] == 2 and stats["records"] == 2
    spacegroups = {r.spacegroup: r.formation_energy_per_atom for r in read_dataset(tmp_path / "w.jsonl")[1]}
    assert spacegroups[229] == pytest.approx(0.0) and spacegroups[225] > 0.1  # bcc W is the ground state


def test_relax_key_follows_the_potential_setting(crystalgen_env):
    """A build that names no potential uses the setting's, so it must not share the default's folder."""
    crystalgen_env(potential=None)
    default = _tiny_config().relax_key()
    crystalgen_env(potential="CHGNet-0.3.0")
    assert _tiny_config().relax_key() == _tiny_config(potential="CHGNet-0.3.0").relax_key() != default
