"""Splits by formula, training batches and the modification pairs training uses."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgen.data.dataset import DatasetRecord
from crystalgen.data.importers import import_cdvae, make_record
from crystalgen.data.splits import polymorph_groups, split_by_formula
from crystalgen.training_data import TensorSet, encode_records, modification_pairs
from shared_data import SHARED_DATA

PEROV_VAL = SHARED_DATA / "cdvae" / "perov_5" / "val.csv"


@pytest.fixture(scope="module")
def perov_records(tmp_path_factory) -> list[DatasetRecord]:
    # The first 600 rows of the real file keep the test fast and still hold many formulas.
    csv.field_size_limit(2**31 - 1)
    with open(PEROV_VAL, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [row for _, row in zip(range(600), reader)]
    subset = tmp_path_factory.mktemp("perov") / "subset.csv"
    with open(subset, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    records = import_cdvae(subset).records
    assert len(records) == 600
    return records


def _polymorph_family() -> list[DatasetRecord]:
    """Three compositions with 1, 3 and 5 polymorphs and distinct energies."""
    records = []
    for formula, count in (("Si", 1), ("NaCl", 3), ("TaB2", 5)):
        for i in range(count):
            if formula == "Si":
                s = Structure(Lattice.cubic(3.0 + i), ["Si"], [[0, 0, 0]])
            elif formula == "NaCl":
                s = Structure(Lattice.cubic(4.0 + 0.1 * i), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
            else:
                s = Structure(Lattice.hexagonal(3.1 + 0.05 * i, 3.3), ["Ta", "B", "B"],
                              [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]])
            energy = -float((i * 7) % count)  # scrambled order relative to i
            records.append(make_record(s, f"{formula}-{i}", "test", energy - 0.01 * i, "formation"))
    return records


def test_split_shares_no_formula(perov_records):
    train, val = split_by_formula(perov_records, 0.2, seed=3)
    assert len(train) + len(val) == len(perov_records)
    assert not {r.formula for r in train} & {r.formula for r in val}
    assert 0.2 <= len(val) / len(perov_records) < 0.25
    again_train, again_val = split_by_formula(list(reversed(perov_records)), 0.2, seed=3)
    assert {r.id for r in again_val} == {r.id for r in val}
    _, other_val = split_by_formula(perov_records, 0.2, seed=4)
    assert {r.id for r in other_val} != {r.id for r in val}


def test_split_needs_two_formulas():
    one = [r for r in _polymorph_family() if r.formula == "TaB2"]
    with pytest.raises(ValueError, match="share one formula"):
        split_by_formula(one, 0.2)


def test_training_batches_hold_the_records(perov_records):
    tensors, kept = encode_records(perov_records[:8], log=lambda _: None)
    batch = TensorSet(tensors, kept).batch(range(4))
    assert batch["coords_lattice"].shape == (4, 64, 3) and batch["element_features"].shape == (4, 64, 125)
    assert batch["spacegroup_number"].tolist() == [r.spacegroup for r in perov_records[:4]]
    assert torch.allclose(batch["formation_energy"], torch.tensor([r.formation_energy_per_atom for r in perov_records[:4]]))


def test_modification_pairs_follow_the_paper():
    """Every (S_i -> S_j), j < i, in each energy-sorted group: all (S_i -> S_0) among them, x0 higher."""
    records = _polymorph_family()
    pairs = modification_pairs(records)
    assert len(pairs) == 3 + 10  # n (n - 1) / 2 per group: NaCl 3, TaB2 10, Si 0
    assert len(set((a.id, b.id) for a, b in pairs)) == len(pairs)
    for init, target in pairs:
        assert init.formula == target.formula and init.id != target.id
        assert target.formation_energy_per_atom < init.formation_energy_per_atom
    lowest = {min(g, key=lambda r: r.formation_energy_per_atom).id for g in polymorph_groups(records).values()}
    to_ground = {(a.id, b.id) for a, b in pairs if b.id in lowest}
    assert len(to_ground) == 2 + 4 and len({a for a, _ in to_ground}) == 6  # every S_i -> S_0
    capped = {(a.id, b.id) for a, b in modification_pairs(records, max_per_group=5, seed=1)}
    assert to_ground <= capped <= {(a.id, b.id) for a, b in pairs} and len(capped) == 3 + 5
