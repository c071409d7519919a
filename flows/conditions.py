"""The conditions grid: composition x space group x formation energy, one energy list per scheme.

Paper §7: the target formation energies start at the composition's hull energy (or an offset below
it) and step by 0.01 or 0.1 eV/atom, 21 values per scheme. The hull energy comes from the
campaign's references (see :mod:`flows.references`), so conditions and ranking share one hull.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from pymatgen.core import Composition

from flows.campaign import ConditionGrid


@dataclass(frozen=True)
class GridPoint:
    """One generation condition and the energy scheme it came from."""

    formula: str  # the cell formula as written in the campaign (e.g. Ta1W2B5)
    spacegroup: int
    formation_energy: float  # eV/atom
    scheme: str  # the energy scheme(s) that produced this point, joined by "+"

    def as_dict(self) -> dict:
        return asdict(self)

    def sampling_condition(self) -> dict:
        """The mapping ``crystalgen.sample.Condition`` accepts."""
        return {"formula": self.formula, "spacegroup": self.spacegroup, "formation_energy": self.formation_energy}


def expand_conditions(
    grid: ConditionGrid, hull_energy: Mapping[str, float] | Callable[[str], float | None] | None = None
) -> list[GridPoint]:
    """All conditions of the ``grid``; ``hull_energy`` maps a reduced formula to its hull formation energy.

    Grid points that several schemes share (same formula, space group and energy) appear once, with
    all those schemes named: the same condition and seed would only sample the same structure again.
    """
    lookup = hull_energy.get if isinstance(hull_energy, Mapping) else (hull_energy or (lambda _formula: None))
    schemes: dict[tuple, list[str]] = {}
    excluded = {tuple(pair) for pair in grid.excluded}
    for formula in grid.compositions:
        reduced = Composition(formula).reduced_formula
        for scheme in grid.energy_grid:
            try:
                energies = scheme.values(lookup(reduced))
            except ValueError as exc:
                raise ValueError(f"{formula}: {exc}") from None
            for spacegroup in grid.spacegroups:
                if (formula, spacegroup) in excluded:
                    continue
                for energy in energies:
                    schemes.setdefault((formula, spacegroup, energy), []).append(scheme.label)
    return [GridPoint(f, spg, e, "+".join(dict.fromkeys(labels))) for (f, spg, e), labels in schemes.items()]


def grid_size(grid: ConditionGrid) -> int:
    """Number of grid points over all schemes, before merging points that schemes share."""
    pairs = len(grid.compositions) * len(grid.spacegroups) - len(grid.excluded)
    return pairs * sum(s.count for s in grid.energy_grid)


def count_conditions(grid: ConditionGrid, hull_energy: float = 0.0) -> int:
    """Distinct conditions of the grid without listing them (``plan`` of a 10^6-point grid stays instant);
    hull-relative schemes are counted from ``hull_energy`` for every composition."""
    total = 0
    excluded = {tuple(pair) for pair in grid.excluded}
    for formula in grid.compositions:
        energies = {e for scheme in grid.energy_grid for e in scheme.values(hull_energy)}
        groups = sum((formula, g) not in excluded for g in grid.spacegroups)
        total += len(energies) * groups
    return total
