"""Sampling API and CLI: determinism, resumable output, invalid samples, torchrun sharding, evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError
from pymatgen.core import Composition, Lattice, Structure

from crystalgen.evaluate import evaluate
from crystalgen.sample import (
    Condition,
    check_structure,
    condition_key,
    condition_key_text,
    default_checkpoint,
    read_samples,
    sample_seed,
    sample_structures,
)
from crystalgen.train import train

from model_helpers import tiny_config, write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
CONDITIONS = [
    Condition(formula="SrTiO3", spacegroup=221, formation_energy=-0.4),
    Condition(formula="BaZrO3", spacegroup=221, formation_energy=0.2),
    Condition(formula="KNbO3", spacegroup=99, formation_energy=-0.1),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sample")


@pytest.fixture(scope="module")
def dataset(workdir) -> Path:
    return write_tiny_dataset(workdir / "tiny.jsonl.gz", n_perov=40, n_carbon=16)


@pytest.fixture(scope="module")
def ddpm_checkpoint(dataset, workdir) -> Path:
    return train(tiny_config(dataset, workdir / "ddpm", method="ddpm", max_steps=4), progress=False, log=lambda _: None)


def _coords(sample) -> torch.Tensor:
    s = sample.pymatgen
    return torch.tensor([*s.lattice.matrix.ravel(), *s.frac_coords.ravel()]) if s else torch.tensor([])


@pytest.mark.parametrize("energy", [-0.656, -0.05, 0.1 + 0.2, -0.6655, 1.5, -0.656 + 0.05, 0.0, -12.3456, 1e-5, -999999])
def test_condition_key_keeps_the_seed_text_of_short_energies(energy):
    """Energies with <= 6 significant digits keep the text (and so the seeds) they had with ``.6g``."""
    before = f"{Composition('TaWB2').formula.replace(' ', '')}|191|{energy:.6g}"
    assert Condition(formula="TaWB2", spacegroup=191, formation_energy=energy).key == before
    assert condition_key_text(condition_key("TaWB2", 191, energy)) == before


def test_condition_key_is_canonical_and_pins_a_demo_seed():
    assert condition_key("TaWB2", "191", -0.6560000000000001) == ("Ta1B2W1", 191, -0.656)
    assert condition_key("B2WTa", 191, -0.656) == condition_key("TaWB2", 191.0, -0.656)
    # the first sample of the demo campaign (seed 3), as generated before condition_key existed
    assert sample_seed(3, Condition(formula="TaWB2", spacegroup=191, formation_energy=-0.656), 0) == 579963960109766643


def test_condition_keys_differ_in_the_sixth_decimal():
    """``.6g`` merged these (both '-1.23457'); the rounded key keeps them apart."""
    a, b = (condition_key("TaWB2", 191, e) for e in (-1.234567, -1.234568))
    assert a != b and condition_key_text(a) != condition_key_text(b)
    first, second = (Condition(formula="TaWB2", spacegroup=191, formation_energy=e) for e in (-1.234567, -1.234568))
    assert first.key != second.key and sample_seed(0, first, 0) != sample_seed(0, second, 0)


def test_samples_are_deterministic_per_seed_condition_and_index(ddpm_checkpoint):
    big = sample_structures(ddpm_checkpoint, CONDITIONS, samples_per_condition=2, seed=7, device="cpu")
    small = sample_structures(ddpm_checkpoint, CONDITIONS[::-1], samples_per_condition=2, seed=7, device="cpu", batch_size=4)
    assert [s.key for s in big] == [(c.key, k) for c in CONDITIONS for k in range(2)]
    by_key = {s.key: s for s in small}
    for s in big:
        assert s.seed == by_key[s.key].seed and s.reason == by_key[s.key].reason
        torch.testing.assert_close(_coords(s), _coords(by_key[s.key]), atol=1e-4, rtol=0)
    other_seed = sample_structures(ddpm_checkpoint, CONDITIONS[:1], seed=8, device="cpu")
    assert other_seed[0].seed != big[0].seed
    for s in big:
        assert s.method == "ddpm" and s.steps == 4
        if s.valid:
            assert s.pymatgen.composition.reduced_formula == Structure.from_dict(s.structure).composition.reduced_formula
            assert s.pymatgen.composition == s.pymatgen.composition.__class__(s.condition.formula)
        else:
            assert s.reason


def test_rerun_skips_finished_samples_and_survives_a_torn_line(ddpm_checkpoint, tmp_path):
    out = tmp_path / "samples.jsonl"
    first = sample_structures(ddpm_checkpoint, CONDITIONS, samples_per_condition=2, out=out, device="cpu", batch_size=2)
    lines = out.read_text().splitlines()
    assert len(lines) == 6
    out.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])  # killed while writing
    calls = []
    again = sample_structures(ddpm_checkpoint, CONDITIONS, samples_per_condition=3, out=out, device="cpu",
                              progress=lambda done, total: calls.append(total))
    assert calls[-1] == 9 - 3  # only the missing keys were sampled
    assert [s.key for s in again] == [(c.key, k) for c in CONDITIONS for k in range(3)]
    stored = read_samples(out)
    assert len({s.key for s in stored}) == 9
    for old in first:
        torch.testing.assert_close(_coords(old), _coords({s.key: s for s in again}[old.key]), atol=1e-4, rtol=0)


def test_ddim_sampler_from_a_ddpm_checkpoint_and_family_errors(ddpm_checkpoint):
    samples = sample_structures(ddpm_checkpoint, CONDITIONS[:1], method="ddim", steps=3, device="cpu")
    assert samples[0].method == "ddim" and samples[0].steps == 3
    with pytest.raises(ValueError, match="cannot be sampled as 'cfm-n'"):
        sample_structures(ddpm_checkpoint, CONDITIONS[:1], method="cfm-n", device="cpu")


def test_invalid_structures_are_kept_with_a_reason():
    x = torch.zeros(64, 3)
    x[61:] = torch.eye(3) * 4
    x[1] = torch.tensor([0.01, 0.0, 0.0])  # 0.04 Å from atom 0
    structure, reason = check_structure(x, ["Na", "Cl"])
    assert structure is None and "apart" in reason
    x[1] = 0.5
    structure, reason = check_structure(x, ["Na", "Cl"])
    assert structure is not None and reason == ""
    x[61:] = 0
    structure, reason = check_structure(x, ["Na", "Cl"])
    assert structure is None and reason.startswith("undecodable")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"formula": "Xx2", "spacegroup": 1, "formation_energy": 0}, "not a chemical element"),
        ({"formula": "Na61", "spacegroup": 1, "formation_energy": 0}, "61 sites"),
        ({"formula": "NaCl", "spacegroup": 231, "formation_energy": 0}, "spacegroup"),
        ({"formula": "NaCl", "spacegroup": 225}, "formation_energy"),
    ],
)
def test_bad_conditions_are_rejected(fields, message):
    with pytest.raises(ValidationError, match=message):
        Condition(**fields)


def test_modification_checkpoint_samples_and_evaluates(dataset, workdir):
    ckpt = train(tiny_config(dataset, workdir / "modcfm", method="mod-cfm", max_steps=3,
                             data__val_fraction=0.0), progress=False, log=lambda _: None)
    initial = Structure(Lattice.cubic(3.6), ["C"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]])
    cond = Condition(formula="C2", spacegroup=227, formation_energy=-0.1, initial_structure=initial.as_dict())
    samples = sample_structures(ckpt, [cond], samples_per_condition=2, device="cpu")
    assert len(samples) == 2 and samples[0].method == "mod-cfm"
    with pytest.raises(ValueError, match="initial_structure"):
        sample_structures(ckpt, CONDITIONS[:1], device="cpu")
    report = evaluate([ckpt], dataset, split="train", max_conditions=4, serial=True, log=lambda _: None)
    assert [r.method for r in report.results] == ["mod-cfm"] and report.results[0].n_conditions == 4


def test_evaluate_reports_every_sampler_of_the_checkpoint(ddpm_checkpoint, dataset, tmp_path):
    report = evaluate([ddpm_checkpoint], dataset, split="val", steps=3, seeds=(0, 1), max_conditions=4,
                      serial=True, log=lambda _: None)
    assert [r.method for r in report.results] == ["ddpm", "ddim"]
    for r in report.results:
        assert r.n_conditions == 4 and r.seeds == [0, 1] and len(r.match_rates) == 2
        assert all(0 <= m <= 1 for m in r.match_rates) and r.structures_per_s > 0
    md, js = report.write(tmp_path)
    assert "| ddim | generation | 3 | 4 | 0,1 |" in md.read_text()
    assert json.loads(js.read_text())["results"][0]["method"] == "ddpm"
    with pytest.raises(ValueError, match="cfm-n"):
        evaluate([ddpm_checkpoint], dataset, methods=["cfm-n"], log=lambda _: None)


def test_cli_sample_writes_results_and_rejects_bad_input(ddpm_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from crystalgen.cli import _register_core, app

    _register_core()
    runner = CliRunner()
    out = tmp_path / "cli.jsonl"
    ok = runner.invoke(app, ["sample", "--checkpoint", str(ddpm_checkpoint), "--formula", "SrTiO3", "--spg", "221",
                             "--energy", "-0.3", "--n", "2", "--out", str(out), "--device", "cpu"])
    assert ok.exit_code == 0, ok.output
    assert len(read_samples(out)) == 2
    bad = runner.invoke(app, ["sample", "--checkpoint", str(ddpm_checkpoint), "--formula", "SrTiO3", "--spg", "0",
                              "--energy", "-0.3", "--out", str(tmp_path / "bad.jsonl")])
    assert bad.exit_code == 1 and "spacegroup" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "bad.jsonl").exists()
    missing = runner.invoke(app, ["sample", "--checkpoint", str(tmp_path / "none.pt"), "--formula", "NaCl", "--spg", "225",
                                  "--energy", "0", "--out", str(tmp_path / "x.jsonl")])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_cli_evaluate_writes_markdown_and_json(ddpm_checkpoint, dataset, tmp_path):
    from typer.testing import CliRunner

    from crystalgen.cli import _register_core, app

    _register_core()
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(ddpm_checkpoint), "--dataset", str(dataset),
                                 "--methods", "ddim", "--steps", "2", "--max-conditions", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "evaluation.json").read_text())["results"][0]["n_conditions"] == 3
    assert "| ddim |" in (tmp_path / "evaluation.md").read_text()
    bad = runner.invoke(app, ["evaluate", "--checkpoint", str(ddpm_checkpoint), "--dataset", str(dataset),
                              "--methods", "gan", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "unknown method 'gan'" in bad.output and not (tmp_path / "bad").exists()


def test_torchrun_two_process_sampling_equals_one_process(ddpm_checkpoint, tmp_path):
    """Two gloo ranks shard the work: same keys as one process, each exactly once, same structures."""
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text(yaml.safe_dump([c.model_dump() for c in CONDITIONS]))
    out = tmp_path / "ddp.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "crystalgen", "sample",
           "--checkpoint", str(ddpm_checkpoint), "--conditions", str(conditions), "--samples-per-condition", "3", "--out", str(out),
           "--device", "cpu", "--batch-size", "2"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = out.read_text().splitlines()
    assert not list(tmp_path.glob("ddp.jsonl.rank*"))  # per-rank parts were merged
    ddp = [json.loads(line) for line in lines]
    keys = [(Condition.model_validate(d["condition"]).key, d["sample_index"]) for d in ddp]
    single = sample_structures(ddpm_checkpoint, CONDITIONS, samples_per_condition=3, device="cpu")
    assert len(keys) == len(set(keys)) == len(single) == 9
    assert set(keys) == {s.key for s in single}
    by_key = {s.key: s for s in single}
    for d, key in zip(ddp, keys):
        assert d["seed"] == by_key[key].seed
        assert (d["structure"] is None) == (by_key[key].structure is None)


def test_shipped_default_checkpoint_samples_a_perovskite():
    path = default_checkpoint()
    assert path.is_file(), f"default checkpoint missing: {path}"
    assert path.stat().st_size < 10 * 2**20
    samples = sample_structures(None, CONDITIONS[:1], samples_per_condition=2, steps=5, device="cpu")
    assert len(samples) == 2 and samples[0].checkpoint == str(path)


@pytest.mark.parametrize("energy", ["nan", "inf", "-inf"])
def test_cli_sample_refuses_a_non_finite_energy(tmp_path, energy):
    from typer.testing import CliRunner

    from crystalgen.cli import _register_core, app

    _register_core()
    out = tmp_path / "nan.jsonl"
    result = CliRunner().invoke(app, ["sample", "--formula", "SrTiO3", "--spg", "221", "--energy", energy,
                                      "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert f"--energy must be a finite number (eV/atom), got {float(energy)}" in result.output
    assert not out.exists()


def test_cli_sample_refuses_a_non_finite_energy_in_a_conditions_file(tmp_path):
    from typer.testing import CliRunner

    from crystalgen.cli import _register_core, app

    _register_core()
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text("- {formula: SrTiO3, spacegroup: 221, formation_energy: -0.3}\n"
                          "- {formula: SrTiO3, spacegroup: 221, formation_energy: .nan}\n")
    out = tmp_path / "nan.jsonl"
    result = CliRunner().invoke(app, ["sample", "--conditions", str(conditions), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert f"{conditions}: condition 2 formation_energy must be a finite number" in " ".join(result.output.split())
    assert not out.exists()


def test_a_sample_rejected_for_close_atoms_is_rebuilt_in_its_cell_when_the_group_is_imposed():
    """Imposing the group keeps the network's cell and places the atoms on Wyckoff positions, so a sample
    whose atoms collided is not lost; the raw sample's rejection stays on record."""
    from crystalgen.relax import validate_structure
    from crystalgen.sample import _finish_sample
    from crystalgen.symmetry import spacegroup_number

    x = torch.zeros(64, 3)
    x[61:] = torch.eye(3) * 4.2
    x[1] = torch.tensor([0.01, 0.0, 0.0])  # 0.03 Å from atom 0
    condition = Condition(formula="Cs1Cl1", spacegroup=221, formation_energy=-2.0)
    raw = _finish_sample(x, condition, "none", seed=0)
    assert raw["structure"] is None and "apart" in raw["reason"] and raw["rejected_structure"] is not None
    rebuilt = _finish_sample(x, condition, "project-or-wyckoff", seed=0)
    assert rebuilt["reason"] == "" and "apart" in rebuilt["symmetry_rebuilt"] and rebuilt["symmetry"] == "wyckoff"
    structure = Structure.from_dict(rebuilt["structure"])
    assert validate_structure(structure) is None and spacegroup_number(structure) == 221
    assert structure.volume == pytest.approx(4.2**3, rel=1e-6)  # the network's cell (no bond was short)
