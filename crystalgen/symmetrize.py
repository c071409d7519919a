"""Make a generated crystal hold the space group it was asked for.

The network writes every atom's coordinates freely (P1). Two ways to impose the requested group G:

* **projection** (:func:`project_onto_group`): read the sample in G's standard primitive cell (the
  frame :func:`crystalgen.symmetry.standard_primitive` gives every training crystal), expand it to
  the conventional cell, and apply the Reynolds operator of G: the metric tensor becomes the average
  of R^T g R over G's rotations, and each atom moves to the average of where G's operations send its
  images (each operation's atom correspondence found by a per-element assignment). The result is
  G-invariant when the sample is near a G-symmetric crystal; atoms that the average merges, or a
  correspondence that is not a group action, make it fail and say why.
* **Wyckoff construction** (:func:`wyckoff_structure`): PyXtal places the composition on Wyckoff
  positions of G inside the sample's own lattice with G's metric imposed (its volume and shape come
  from the model), with PyXtal's distance checks. It always holds G; only the cell is the model's.

:func:`symmetrize` tries the projection and falls back to the construction; a result with bonds
shorter than :data:`BOND_FRACTION` of the covalent radii is expanded uniformly (symmetry kept).
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Lattice, Structure
from scipy.optimize import linear_sum_assignment

from crystalgen.symmetry import standard_setting
from crystalgen.volume import contact_ratio, expected_volume

MERGE_DISTANCE = 0.5  # Å: atoms the projection brings closer than this have merged (wrong orbit)
MAX_ITERATIONS = 20
#: an atom the projection moves further than this was not near a G-symmetric position: the result
#: would be another crystal, not the sample made symmetric
MAX_DISPLACEMENT = 1.0  # Å
CHECK_SYMPREC = 0.01  # Å: the projected crystal must show its group this tightly
MODES = ("none", "project", "wyckoff", "project-or-wyckoff")
#: PyXtal places atoms in the sample's cell shape enlarged to at least this x the sum of elemental volumes
PLACEMENT_ROOM = 1.3
#: a symmetric crystal whose shortest bond is below this fraction of the covalent-radius sum is
#: expanded uniformly up to it (the relaxer rejects < 0.6 as a collapse; the margin lets it relax) ...
BOND_FRACTION = 0.75
MAX_EXPANSION = 1.35  # ... by at most this factor in length; a crystal needing more fails


@dataclass(frozen=True)
class Symmetrized:
    """Outcome of imposing a space group on one sample."""

    structure: Structure | None
    method: str  # 'none', 'project' or 'wyckoff'
    spacegroup: int | None  # what spglib finds in ``structure`` at CHECK_SYMPREC
    displacement: float | None = None  # largest atom move of the projection, Å
    reason: str = ""  # why it failed


def _metric(lattice_rows: np.ndarray) -> np.ndarray:
    return lattice_rows @ lattice_rows.T


def _lattice_from_metric(metric: np.ndarray) -> Lattice:
    a, b, c = np.sqrt(np.diag(metric))
    alpha = np.degrees(np.arccos(np.clip(metric[1, 2] / (b * c), -1, 1)))
    beta = np.degrees(np.arccos(np.clip(metric[0, 2] / (a * c), -1, 1)))
    gamma = np.degrees(np.arccos(np.clip(metric[0, 1] / (a * b), -1, 1)))
    return Lattice.from_parameters(a, b, c, alpha, beta, gamma)


def symmetric_conventional_lattice(structure: Structure, number: int) -> Lattice:
    """The sample's lattice read as G's standard primitive cell, made G-invariant, as the conventional cell."""
    rotations, _, to_primitive = standard_setting(number)
    conventional = np.linalg.inv(to_primitive.T) @ structure.lattice.matrix  # rows a_c, b_c, c_c
    metric = _metric(conventional)
    averaged = np.mean([r.T @ metric @ r for r in rotations], axis=0)
    return _lattice_from_metric(averaged)


def spacegroup_of(structure: Structure, symprec: float = CHECK_SYMPREC) -> int | None:
    import spglib

    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    return None if dataset is None else int(dataset.number)


def _wrap_delta(delta: np.ndarray) -> np.ndarray:
    return delta - np.round(delta)


def _correspondence(frac: np.ndarray, image: np.ndarray, species: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """For every atom i the atom j of the same element nearest to ``image[i]`` (one-to-one, periodic)."""
    target = np.empty(len(frac), dtype=int)
    for z in np.unique(species):
        idx = np.flatnonzero(species == z)
        delta = _wrap_delta(frac[idx][None, :, :] - image[idx][:, None, :])
        cost = np.linalg.norm(delta @ lattice, axis=-1)
        rows, cols = linear_sum_assignment(cost)
        target[idx[rows]] = idx[cols]
    return target


def project_onto_group(structure: Structure, number: int) -> Symmetrized:
    """Reynolds projection of a sample (in G's standard primitive frame) onto space group ``number``."""
    rotations, translations, to_primitive = standard_setting(number)
    lattice = symmetric_conventional_lattice(structure, number)
    # conventional cell: the primitive atoms plus their images under the centring translations
    centring = [t for r, t in zip(rotations, translations) if np.allclose(r, np.eye(3))]
    base = (to_primitive @ structure.frac_coords.T).T
    frac = np.concatenate([base + t for t in centring]) % 1.0
    species = np.tile([site.specie.Z for site in structure], len(centring))
    matrix = lattice.matrix
    start = frac.copy()
    for _ in range(MAX_ITERATIONS):
        correction = np.zeros_like(frac)
        for r, t in zip(rotations, translations):
            image = frac @ r.T + t
            partner = _correspondence(frac, image, species, matrix)
            # op maps atom i onto atom partner[i]: the estimate of x_i from this op is x_i + R^-1 d
            correction += _wrap_delta(frac[partner] - image) @ np.linalg.inv(r).T
        correction /= len(rotations)
        frac = frac + correction
        if np.abs(correction @ matrix).max() < 1e-6:
            break
    moved = float(np.linalg.norm(_wrap_delta(frac - start) @ matrix, axis=1).max())
    if moved > MAX_DISPLACEMENT:
        return Symmetrized(None, "project", None, moved, f"projection moved an atom {moved:.2f} Å (> {MAX_DISPLACEMENT} Å)")
    primitive_frac = (np.linalg.inv(to_primitive) @ frac[: len(structure)].T).T % 1.0
    projected = Structure(Lattice(to_primitive.T @ matrix), [site.specie for site in structure], primitive_frac)
    if len(projected) > 1:
        distances = projected.distance_matrix + np.eye(len(projected)) * 1e9
        if distances.min() < MERGE_DISTANCE:
            return Symmetrized(None, "project", None, moved, f"projection merged atoms ({distances.min():.2f} Å apart)")
    found = spacegroup_of(projected)
    if found != number:
        return Symmetrized(None, "project", found, moved, f"projection gave space group {found}, not {number}")
    return Symmetrized(projected, "project", found, moved)


def conventional_counts(species: list[str], number: int) -> dict[str, int]:
    """Atoms per element in G's conventional cell for a primitive cell holding ``species``."""
    from crystalgen.wyckoff import lattice_points

    factor = lattice_points(number)
    counts: dict[str, int] = {}
    for symbol in species:
        counts[symbol] = counts.get(symbol, 0) + factor
    return counts


def compatible(species: list[str], number: int) -> bool:
    """Whether G's Wyckoff positions can hold this composition in one primitive cell (PyXtal's check)."""
    from pyxtal.symmetry import Group

    return bool(Group(number).check_compatible(list(conventional_counts(species, number).values()))[0])


@contextmanager
def _seeded_global_rngs(seed: int):
    """PyXtal draws from numpy's and Python's global generators too: seed them, then restore them."""
    saved_np, saved_py = np.random.get_state(), random.getstate()
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved_np)
        random.setstate(saved_py)


def wyckoff_structure(structure: Structure, number: int, seed: int, attempts: int = 4) -> Symmetrized:
    """PyXtal's Wyckoff placement of the sample's composition in its G-invariant lattice (seeded).

    Tries the sample's cell shape first, enlarged to at least :data:`PLACEMENT_ROOM` x the sum of
    elemental volumes (in a cell denser than that PyXtal can search for minutes: 456 s for one
    7.9 Å^3/atom Ta1W1B6 cell in P6/mmm, 0.0 s at 1.3x); when PyXtal cannot place the atoms, lets it
    choose the cell shape. The result gets the sample's volume per atom, or more where bonds would be
    shorter than :data:`BOND_FRACTION` of the covalent radii.
    """
    from pyxtal import pyxtal
    from pyxtal.lattice import Lattice as PyxtalLattice

    counts = conventional_counts([site.specie.symbol for site in structure], number)
    lattice = symmetric_conventional_lattice(structure, number)
    roomy = max(structure.volume, PLACEMENT_ROOM * expected_volume(structure.composition))
    lattice = lattice.scale(lattice.volume * roomy / structure.volume)
    last = ""
    with _seeded_global_rngs(seed):
        rng = np.random.default_rng(seed)
        for attempt in range(attempts):
            state = int(rng.integers(2**31))
            crystal = pyxtal(random_state=state)
            fixed = (PyxtalLattice.from_para(*lattice.parameters, ltype=_lattice_type(number), random_state=state)
                     if attempt < attempts // 2 else None)
            try:
                crystal.from_random(3, number, list(counts), list(counts.values()), lattice=fixed, random_state=state)
            except Exception as exc:  # noqa: BLE001 - PyXtal raises many kinds for "no placement found"
                last = f"{type(exc).__name__}: {exc}"
                continue
            if not crystal.valid:
                last = "PyXtal found no placement"
                continue
            built = crystal.to_pymatgen().get_primitive_structure(tolerance=0.01)
            if len(built) != len(structure):
                last = f"PyXtal cell reduced to {len(built)} sites, not {len(structure)}"
                continue
            built.scale_lattice(structure.volume)
            return expand_collapsed(Symmetrized(built, "wyckoff", spacegroup_of(built)), max_expansion=None)
    return Symmetrized(None, "wyckoff", None, reason=f"Wyckoff construction failed: {last}")


def expand_collapsed(result: Symmetrized, max_expansion: float | None = MAX_EXPANSION) -> Symmetrized:
    """Scale a cell with too-short bonds uniformly (symmetry is kept) until they reach BOND_FRACTION."""
    if result.structure is None:
        return result
    fraction = contact_ratio(result.structure)
    if fraction >= BOND_FRACTION:
        return result
    factor = BOND_FRACTION / fraction
    if max_expansion is not None and factor > max_expansion:
        return Symmetrized(None, result.method, result.spacegroup, result.displacement,
                           f"shortest bond {fraction:.2f} x covalent radii: more than {max_expansion}x expansion needed")
    expanded = result.structure.copy()
    expanded.scale_lattice(expanded.volume * factor**3)
    return Symmetrized(expanded, result.method, result.spacegroup, result.displacement)


def _lattice_type(number: int) -> str:
    for upper, name in ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
                        (167, "trigonal"), (194, "hexagonal"), (230, "cubic")):
        if number <= upper:
            return name
    raise ValueError(f"space group number {number} outside 1..230")


def symmetrize(structure: Structure, number: int, mode: str = "project-or-wyckoff", seed: int = 0) -> Symmetrized:
    """Impose space group ``number`` with ``mode`` (one of :data:`MODES`).

    A composition that G cannot hold in one primitive cell (e.g. one Ta atom in Pnma, whose
    positions all have 4 copies) gets P1 instead: ``spacegroup`` then says 1. With
    'project-or-wyckoff' a projection that fails, or leaves atoms overlapping or bonds collapsed
    (the relaxer's input checks), is replaced by the Wyckoff construction.
    """
    from crystalgen.relax import validate_structure

    if mode not in MODES:
        raise ValueError(f"symmetry mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "none":
        return Symmetrized(structure, "none", None)
    if number != 1 and not compatible([site.specie.symbol for site in structure], number):
        number = 1
    result = Symmetrized(None, "none", None, reason="not tried")
    if mode in ("project", "project-or-wyckoff"):
        result = expand_collapsed(project_onto_group(structure, number) if number != 1 else Symmetrized(structure, "project", 1, 0.0))
        if mode == "project":
            return result
        if result.structure is not None and (problem := validate_structure(result.structure)) is None:
            return result
        if result.structure is not None:
            result = Symmetrized(None, result.method, result.spacegroup, result.displacement, problem)
    wyckoff = wyckoff_structure(structure, number, seed)
    if wyckoff.structure is None and result.reason != "not tried":
        return Symmetrized(None, "wyckoff", None, reason=f"{result.reason}; {wyckoff.reason}")
    return wyckoff
