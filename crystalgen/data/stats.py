"""Summaries of a dataset: what ``crystalgen data stats`` prints and what training normalises with."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Composition

from crystalgen.data.dataset import DatasetRecord
from crystalgen.data.splits import polymorph_groups


def record_energy(record: DatasetRecord) -> float | None:
    """The energy that orders polymorphs and conditions the model: formation energy per atom if
    known, else total energy per atom (same ordering and differences within one composition)."""
    if record.formation_energy_per_atom is not None:
        return record.formation_energy_per_atom
    return record.energy_per_atom


@dataclass(frozen=True)
class EnergyStatistics:
    """Mean and standard deviation used to normalise the energy condition (saved in checkpoints)."""

    mean: float
    std: float

    def normalise(self, energy):
        return (energy - self.mean) / self.std

    def denormalise(self, value):
        return value * self.std + self.mean


def energy_statistics(records: Iterable[DatasetRecord]) -> EnergyStatistics:
    values = np.array([e for e in map(record_energy, records) if e is not None], dtype=float)
    if len(values) == 0:
        raise ValueError("no energies in the dataset")
    std = float(values.std())
    return EnergyStatistics(mean=float(values.mean()), std=std if std > 0 else 1.0)


@dataclass(frozen=True)
class DatasetStats:
    n_structures: int
    n_formulas: int
    nsites_min: int
    nsites_max: int
    elements: Counter  # element symbol -> number of structures containing it
    spacegroups: Counter  # space group number -> number of structures
    group_sizes: Counter  # polymorph-group size -> number of groups
    energy: dict[str, float]  # count/min/max/mean/std of record_energy


def dataset_stats(records: Iterable[DatasetRecord]) -> DatasetStats:
    records = list(records)
    groups = polymorph_groups(records)
    elements: Counter = Counter()
    for record in records:
        elements.update({el.symbol for el in Composition(record.formula).elements})
    nsites = [r.nsites for r in records] or [0]
    energies = np.array([e for e in map(record_energy, records) if e is not None], dtype=float)
    energy = (
        {"count": len(energies), "min": float(energies.min()), "max": float(energies.max()),
         "mean": float(energies.mean()), "std": float(energies.std())}
        if len(energies)
        else {"count": 0}
    )
    return DatasetStats(
        n_structures=len(records),
        n_formulas=len(groups),
        nsites_min=min(nsites),
        nsites_max=max(nsites),
        elements=elements,
        spacegroups=Counter(r.spacegroup for r in records),
        group_sizes=Counter(len(members) for members in groups.values()),
        energy=energy,
    )
