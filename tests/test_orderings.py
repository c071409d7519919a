"""Metal-site orderings of boride structure types: enumeration, a real (tiny) build on a base dataset, CLI errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from typer.testing import CliRunner

from crystalgen.data.dataset import read_dataset, write_dataset
from crystalgen.orderings import BORIDE_TYPES, boride_parent, build_ordering_dataset, hermite_normal_forms, ordering_candidates
from crystalgen.prototypes import BuildConfig

SHIPPED = Path(__file__).resolve().parents[1] / "crystalgen" / "assets" / "datasets" / "aflow_prototypes_tensornet.jsonl.gz"


@pytest.fixture(autouse=True)
def _private_check_cache(tmp_path, crystalgen_env):
    crystalgen_env(cache_dir=tmp_path / "cache")


def test_supercells_are_every_sublattice_once():
    # number of sublattices of index n of a 3D lattice: 1, 7, 13, 35 (OEIS A001001)
    assert [sum(1 for _ in hermite_normal_forms(n)) for n in (1, 2, 3, 4)] == [1, 7, 13, 35]
    lattices = [np.round(np.abs(np.linalg.det(h))) for h in hermite_normal_forms(4)]
    assert set(lattices) == {4.0}


def test_every_structure_type_has_a_metal_sublattice():
    for name, *_ in BORIDE_TYPES:
        parent = boride_parent(name)
        symbols = {site.specie.symbol for site in parent}
        assert symbols == {"Re", "B"}, name


def test_alb2_orderings_are_the_three_index_2_orderings():
    # doubled AlB2 cells order Ta and W by planes with wave vector M, A or L: three distinct crystals
    candidates = ordering_candidates(("Ta", "W"), max_sites=6, types=("AlB2",))
    structures = [Structure.from_dict(c["structure"]) for c in candidates]
    assert len(structures) == 3 and {s.composition.reduced_formula for s in structures} == {"TaB4W"}
    matcher = StructureMatcher()
    assert not any(matcher.fit(a, b) for i, a in enumerate(structures) for b in structures[i + 1:])
    assert [c["id"] for c in candidates] == [c["id"] for c in ordering_candidates(("Ta", "W"), 6, ("AlB2",))]


def _base(path: Path, potential: str = "TensorNet-MatPES-PBE-v2025.1-PES") -> Path:
    metadata, records = read_dataset(SHIPPED)
    keep = [r for r in records if r.formula in ("TaB2", "WB2")][:6]
    write_dataset(path, keep, {**metadata, "potential": potential})
    return path


def test_build_adds_relaxed_orderings_with_the_base_references(tmp_path):
    base = _base(tmp_path / "base.jsonl.gz")
    config = BuildConfig(systems=["Ta-W-B"], fmax=0.1, max_steps=60, chunk_size=2)
    output = tmp_path / "out.jsonl.gz"
    stats = build_ordering_dataset(base, output, tmp_path / "work", config, max_sites=6, types=("AlB2",), workers=0)
    metadata, records = read_dataset(output)
    base_meta, base_records = read_dataset(base)
    new = [r for r in records if r.source == "boride-ordering+mlip"]
    assert len(records) == len(base_records) + len(new) and stats["orderings_kept"] == len(new) >= 1
    refs = base_meta["stats"]["elemental_references_eV_per_atom"]
    for record in new:
        comp = record.pymatgen.composition
        expected = record.energy_per_atom - sum(refs[el.symbol] * n for el, n in comp.items()) / comp.num_atoms
        assert record.formation_energy_per_atom == pytest.approx(expected, abs=1e-5)
        assert -1.5 < record.formation_energy_per_atom < 0.0  # (Ta,W)B2 is bound like TaB2 and WB2
    assert metadata["orderings"]["stats"]["complete"] and metadata["base"]["records"] == len(base_records)
    # a second run relaxes nothing and writes the same records
    again = build_ordering_dataset(base, tmp_path / "again.jsonl.gz", tmp_path / "work", config, max_sites=6,
                                   types=("AlB2",), workers=0)
    assert again["candidates_relaxed"] == stats["candidates_relaxed"]
    assert [r.id for r in read_dataset(tmp_path / "again.jsonl.gz")[1]] == [r.id for r in records]
    # a base relaxed with another potential is refused: formation energies would mix potentials
    other = _base(tmp_path / "other.jsonl.gz", potential="CHGNet-0.3.0")
    with pytest.raises(ValueError, match="cannot be mixed"):
        build_ordering_dataset(other, tmp_path / "x.jsonl.gz", tmp_path / "work", config, max_sites=6, types=("AlB2",),
                               workers=0)
    assert not (tmp_path / "x.jsonl.gz").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--metals", "Ta-Xx"], "not an element"), (["--metals", "Ta-B"], "two metals"),
     (["--type", "NaCl"], "NaCl"), (["--base", "missing.jsonl.gz"], "not found")],
)
def test_cli_rejects_bad_input_without_writing(tmp_path, args, message):
    from crystalgen.cli import _register_core, app

    _register_core()
    out = tmp_path / "o.jsonl.gz"
    result = CliRunner().invoke(app, ["data", "build-orderings", str(out), "--work-dir", str(tmp_path / "w"), *args])
    assert result.exit_code == 1 and message in result.output and not out.exists()
