"""Splits by formula and the generation / modification-pair datasets."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch.utils.data import DataLoader

from crystalgen.data.dataset import DatasetRecord
from crystalgen.data.importers import import_cdvae, make_record
from crystalgen.data.samplers import EpochSampler, GenerationDataset, ModificationPairDataset
from crystalgen.data.splits import polymorph_groups, split_by_formula
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


def test_generation_dataset_items(perov_records):
    ds = GenerationDataset(perov_records[:8])
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["coords_lattice"].shape == (4, 64, 3) and batch["element_features"].shape == (4, 64, 125)
    assert batch["spacegroup_number"].tolist() == [r.spacegroup for r in perov_records[:4]]
    assert torch.allclose(batch["formation_energy"], torch.tensor([r.formation_energy_per_atom for r in perov_records[:4]]))


def test_modification_pairs_follow_the_paper():
    records = _polymorph_family()
    ds = ModificationPairDataset(records, seed=0)
    groups = polymorph_groups(records)
    # (n-1) pairs to the ground state + (n-2) non-lowest pairs per group: NaCl 2+1, TaB2 4+3, Si 0.
    assert len(ds) == 3 + 7
    for epoch in range(5):
        pairs = ds.pairs_for_epoch(epoch)
        for p in pairs:
            init, target = records[p.init], records[p.target]
            assert init.formula == target.formula and p.init != p.target
            assert p.e_diff <= 0 and p.e_diff == pytest.approx(
                target.formation_energy_per_atom - init.formation_energy_per_atom
            )
        lowest = {f: min(g, key=lambda r: r.formation_energy_per_atom).id for f, g in groups.items()}
        to_ground = [p for p in pairs if records[p.target].id == lowest[records[p.target].formula]]
        assert len(to_ground) == 6 and len({p.init for p in to_ground}) == 6
    epochs = {tuple(ds.pairs_for_epoch(e)) for e in range(8)}
    assert len(epochs) > 1  # non-lowest pairs are redrawn


@pytest.mark.parametrize("persistent", [False, True])
def test_pairs_exact_with_two_workers(persistent):
    records = _polymorph_family()
    ds = ModificationPairDataset(records, seed=5)
    sampler = EpochSampler(ds, seed=1)
    loader = DataLoader(ds, batch_size=3, sampler=sampler, num_workers=2, persistent_workers=persistent)
    for epoch in (0, 3):
        sampler.set_epoch(epoch)
        got = Counter(
            (int(a), int(b)) for batch in loader for a, b in zip(batch["init_index"], batch["target_index"])
        )
        assert got == Counter((p.init, p.target) for p in ds.pairs_for_epoch(epoch))


def test_pairs_with_set_epoch_and_shuffle():
    ds = ModificationPairDataset(_polymorph_family(), seed=5)
    ds.set_epoch(2)
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2)
    got = Counter((int(a), int(b)) for batch in loader for a, b in zip(batch["init_index"], batch["target_index"]))
    assert got == Counter((p.init, p.target) for p in ds.pairs_for_epoch(2))
    item = ds[0]
    assert item["x0"].shape == (64, 3) and item["e_diff"] <= 0
    assert item["spacegroup_number"] == records_spg(ds, ds.pair(0).target)


def records_spg(ds, index):
    return ds.records[index].spacegroup
