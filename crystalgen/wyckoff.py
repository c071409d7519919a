"""Whether a cell formula fits a space group's Wyckoff positions, and in which cell.

PyXtal counts atoms in the *conventional* cell, so a centred group (C2/m, Amm2, Cmmm, ...) cannot
take one Ta of an 8-site Ta1W1B6 cell: its conventional cell holds the primitive cell once per
lattice point. A cell formula is read first as the primitive cell (counts x lattice points in the
conventional cell), then as the conventional cell itself.
"""

from __future__ import annotations

from functools import cache

from pymatgen.core import Composition

#: lattice points per conventional cell, by the centring letter of the Hermann-Mauguin symbol
CENTRING_POINTS = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}


def lattice_points(spacegroup: int) -> int:
    """Lattice points of the conventional cell of ``spacegroup`` (R groups in the hexagonal setting: 3)."""
    from pyxtal.symmetry import Group

    return CENTRING_POINTS[Group(int(spacegroup)).symbol[0]]


@cache
def conventional_counts(formula: str, spacegroup: int) -> tuple[int, ...] | None:
    """Atoms per element (in ``Composition(formula)`` order) of a conventional cell of ``spacegroup``
    that holds the cell ``formula``: the formula as the primitive cell if the Wyckoff positions allow
    it, else the formula as the conventional cell; ``None`` when neither fits."""
    from pyxtal.symmetry import Group

    group = Group(int(spacegroup))
    counts = [int(round(n)) for n in Composition(formula).values()]
    points = CENTRING_POINTS[group.symbol[0]]
    for candidate in ([n * points for n in counts], counts):
        if group.check_compatible(candidate)[0]:
            return tuple(candidate)
    return None


def fits_spacegroup(formula: str, spacegroup: int) -> bool:
    """Whether the cell ``formula`` can sit on Wyckoff positions of ``spacegroup`` (either reading)."""
    return conventional_counts(formula, spacegroup) is not None
