"""Seeded random crystals for dedupe tests and benchmarks: symmetric cells of a given formula, and the
variants StructureMatcher must call the same crystal (other cell, origin, order, supercell, small noise).

Symmetric cells are built from orbits of random points under the space group (points snapped to
special coordinates now and then, so special Wyckoff positions occur); a cell is accepted when the
orbit sizes add up to the formula's counts and no two atoms are closer than ``min_distance``.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.symmetry.groups import SpaceGroup

SPECIAL = (0.0, 0.5, 0.25, 0.75, 1 / 3, 2 / 3)


def _lattice(group: SpaceGroup, rng: np.random.Generator) -> Lattice:
    a, b, c = rng.uniform(3.0, 7.0, 3)
    system = group.crystal_system
    if system == "cubic":
        return Lattice.cubic(a)
    if system in ("hexagonal", "trigonal"):
        return Lattice.hexagonal(a, c)
    if system == "tetragonal":
        return Lattice.tetragonal(a, c)
    if system == "orthorhombic":
        return Lattice.orthorhombic(a, b, c)
    if system == "monoclinic":
        return Lattice.monoclinic(a, b, c, rng.uniform(95, 120))
    return Lattice.from_parameters(a, b, c, *rng.uniform(75, 105, 3))


def _point(rng: np.random.Generator) -> np.ndarray:
    p = rng.random(3)
    for i in range(3):
        if rng.random() < 0.4:
            p[i] = SPECIAL[rng.integers(len(SPECIAL))]
    if rng.random() < 0.15:
        p[1] = p[0]
    return p


def _orbit(rotations: np.ndarray, shifts: np.ndarray, point: np.ndarray) -> np.ndarray:
    images = np.mod(rotations @ point + shifts, 1.0)
    keys = {tuple(row): i for i, row in enumerate(np.round(images, 4) % 1.0)}
    return images[sorted(keys.values())]


def _clashes(lattice: Lattice, new: np.ndarray, placed: list[np.ndarray], min_distance: float) -> bool:
    inner = lattice.get_all_distances(new, new) + np.eye(len(new)) * 1e9
    if inner.min() < min_distance:
        return True
    return bool(placed) and lattice.get_all_distances(new, np.array(placed)).min() < min_distance


def random_symmetric(formula: str, spacegroup: int, rng: np.random.Generator, volume_per_atom: float = 10.0,
                     min_distance: float = 1.5, max_formula_units: int = 4, attempts: int = 40) -> Structure | None:
    """A random cell of ``formula`` built in ``spacegroup`` (its standard setting), or None if none was
    found in ``attempts``; spglib may find a higher group when the random points are special."""
    group = SpaceGroup.from_int_number(spacegroup)
    rotations = np.array([op.rotation_matrix for op in group.symmetry_ops])
    shifts = np.array([op.translation_vector for op in group.symmetry_ops])
    base = Composition(formula)
    for _ in range(attempts):
        units = int(rng.integers(1, max_formula_units + 1))
        counts = {str(el): int(round(n * units)) for el, n in base.items()}
        lattice = _lattice(group, rng)
        lattice = lattice.scale(volume_per_atom * sum(counts.values()))
        species, points = [], []
        for element, count in sorted(counts.items(), key=lambda item: -item[1]):
            left = count
            for _ in range(60):
                if left == 0:
                    break
                orbit = _orbit(rotations, shifts, _point(rng))
                if len(orbit) <= left and not _clashes(lattice, orbit, points, min_distance):
                    species += [element] * len(orbit)
                    points += list(orbit)
                    left -= len(orbit)
            if left:
                break
        else:
            return Structure(lattice, species, points)
    return None


def random_p1(formula: str, rng: np.random.Generator, volume_per_atom: float = 10.0,
              min_distance: float = 1.5) -> Structure:
    """A random triclinic cell of ``formula`` (one formula unit), atoms placed one by one."""
    species = [str(el) for el, n in Composition(formula).items() for _ in range(int(n))]
    while True:
        lattice = Lattice.from_parameters(*rng.uniform(3.0, 6.0, 3), *rng.uniform(70, 110, 3))
        lattice = lattice.scale(volume_per_atom * len(species))
        points: list[np.ndarray] = []
        for _ in range(50 * len(species)):
            point = rng.random((1, 3))
            if not _clashes(lattice, point, points, min_distance):
                points.append(point[0])
                if len(points) == len(species):
                    return Structure(lattice, species, points)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def other_cell(structure: Structure, rng: np.random.Generator) -> Structure:
    """The same crystal in another unit cell: unimodular basis change, rotated frame, shifted origin,
    shuffled site order."""
    while True:
        basis = np.eye(3, dtype=int) + np.triu(rng.integers(-1, 2, (3, 3)), 1)
        basis = basis[rng.permutation(3)]
        if abs(round(np.linalg.det(basis))) == 1:
            break
    cell = structure.copy()
    cell.make_supercell(basis)
    return _moved(cell, rng)


def supercell(structure: Structure, rng: np.random.Generator) -> Structure:
    """The same crystal in a 2- or 3-fold supercell (sometimes non-diagonal), moved like ``other_cell``."""
    matrices = ([[2, 0, 0], [0, 1, 0], [0, 0, 1]], [[1, 0, 0], [0, 1, 0], [0, 0, 3]], [[1, 1, 0], [-1, 1, 0], [0, 0, 1]],
                [[1, 0, 0], [0, 1, 1], [0, -1, 1]])
    cell = structure.copy()
    cell.make_supercell(matrices[rng.integers(len(matrices))])
    return _moved(cell, rng)


def near_duplicate(structure: Structure, rng: np.random.Generator, displacement: float = 0.05,
                   strain: float = 0.01, volume_change: float = 0.03) -> Structure:
    """The crystal with every site moved up to ``displacement`` Å, the cell sheared up to ``strain`` and its
    volume changed up to ``volume_change`` (what two relaxations into the same minimum differ by)."""
    cell = structure.copy()
    directions = rng.normal(size=(len(cell), 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    moves = directions * rng.uniform(0, displacement, (len(cell), 1))
    for i, move in enumerate(moves):
        cell.translate_sites([i], move, frac_coords=False, to_unit_cell=True)
    shear = np.eye(3) + rng.uniform(-strain, strain, (3, 3))
    cell.lattice = Lattice(cell.lattice.matrix @ shear)
    cell.scale_lattice(structure.volume * (1 + rng.uniform(-volume_change, volume_change)))
    return _moved(cell, rng)


def _moved(cell: Structure, rng: np.random.Generator) -> Structure:
    rotated = Structure(Lattice(cell.lattice.matrix @ random_rotation(rng).T), cell.species, cell.frac_coords)
    rotated.translate_sites(range(len(rotated)), rng.random(3), to_unit_cell=True)
    order = rng.permutation(len(rotated))
    return Structure(rotated.lattice, [rotated.species[i] for i in order], rotated.frac_coords[order])


#: space groups whose random Ta-W-B cells (up to two formula units) come out within a few tries
GROUPS = (1, 2, 6, 10, 12, 25, 38, 47, 65, 99, 123, 156, 164, 187, 194)


def random_crystal(formula: str, rng: np.random.Generator, p1_share: float = 0.25) -> Structure:
    """A random P1 cell (``p1_share`` of the time) or a random cell of a group from ``GROUPS``."""
    while True:
        if rng.random() < p1_share:
            return random_p1(formula, rng)
        if (found := random_symmetric(formula, int(rng.choice(GROUPS)), rng, max_formula_units=2)) is not None:
            return found


def distinct_crystals(formula: str, n: int, rng: np.random.Generator) -> list[Structure]:
    """``n`` random crystals of ``formula`` that not even a looser StructureMatcher (ltol 0.3, stol 0.45,
    angle_tol 8) pairs, so their noisy copies stay twins of their own crystal only."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    loose = StructureMatcher(ltol=0.3, stol=0.45, angle_tol=8)
    crystals: list[tuple[Structure, Structure]] = []  # (as generated, reduced for the matcher)
    while len(crystals) < n:
        new = random_crystal(formula, rng)
        reduced = loose._get_reduced_structure(new, primitive_cell=True, niggli=True)
        if not any(loose.fit(old, reduced, skip_structure_reduction=True) for _, old in crystals):
            crystals.append((new, reduced))
    return [new for new, _ in crystals]


def with_twins(crystals: list[Structure], rng: np.random.Generator, prefix: str = "c", displacement: float = 0.1,
               strain: float = 0.01) -> list[tuple[str, Structure]]:
    """Each crystal with four twins (another cell, a supercell, two near-duplicates), shuffled; ids
    ``<prefix><crystal>-<k>`` with k = 0 for the crystal as generated."""
    family = []
    for i, base in enumerate(crystals):
        variants = [base, other_cell(base, rng), supercell(base, rng),
                    near_duplicate(base, rng, displacement, strain), near_duplicate(base, rng, displacement, strain)]
        family += [(f"{prefix}{i}-{k}", s) for k, s in enumerate(variants)]
    return [family[i] for i in rng.permutation(len(family))]


def exhaustive_twins(structures: list[tuple[str, Structure]]) -> dict[str, str | None]:
    """What a scan over all kept structures finds: ``{id: first-added twin or None}`` (a twin is not kept).

    Each structure is reduced once and fit() told so (``skip_structure_reduction``), as
    ``StructureMatcher.group_structures`` does; fit() alone would reduce both again, to the same cells.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    kept: list[tuple[str, Structure]] = []
    twins: dict[str, str | None] = {}
    for cid, structure in structures:
        reduced = matcher._get_reduced_structure(structure, primitive_cell=True, niggli=True)
        twins[cid] = next((k for k, other in kept
                           if other.composition.reduced_formula == reduced.composition.reduced_formula
                           and matcher.fit(other, reduced, skip_structure_reduction=True)), None)
        if twins[cid] is None:
            kept.append((cid, reduced))
    return twins
