"""Space groups as fixed-size tensors: the affine matrices of the group's operations.

pymatgen's ``SpaceGroup.symmetry_ops`` is a ``set`` (arbitrary order), so the operations are
sorted lexicographically by their rounded 4x4 affine matrix. The encoding therefore depends
only on the group, not on hashing or pymatgen's internal order. Rhombohedral groups use the
hexagonal setting (pymatgen's default), so no group has more than 192 operations.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from pymatgen.core import Structure
from pymatgen.symmetry.groups import SpaceGroup

from crystalgen.layout import AFFINE_DIM, N_SYMOPS

#: Tolerance (Å) for ``SpacegroupAnalyzer`` when a structure's space group is not given.
#: 0.1 Å is the Materials Project / CDVAE evaluation choice and tolerates relaxation noise.
DEFAULT_SYMPREC = 0.1


@lru_cache(maxsize=230)
def _operations(number: int) -> np.ndarray:
    ops = SpaceGroup.from_int_number(number).symmetry_ops
    matrices = [np.round(op.affine_matrix, 6) for op in ops]
    # Translations are taken modulo 1 so one operation has one spelling.
    for m in matrices:
        m[:3, 3] = np.round(m[:3, 3] % 1.0, 6) % 1.0
    matrices.sort(key=lambda m: tuple(m.ravel()))
    stacked = np.stack(matrices).astype(np.float32)
    stacked.setflags(write=False)
    return stacked


def spacegroup_operations(number: int) -> np.ndarray:
    """Canonically ordered affine operations of space group ``number``: (n_ops, 4, 4)."""
    if not 1 <= int(number) <= 230:
        raise ValueError(f"space group number {number} outside 1..230")
    return _operations(int(number))


def encode_spacegroup(number: int) -> np.ndarray:
    """The (192, 4, 4) encoding: the group's operations, then zero matrices."""
    ops = spacegroup_operations(number)
    out = np.zeros((N_SYMOPS, AFFINE_DIM, AFFINE_DIM), dtype=np.float32)
    out[: len(ops)] = ops
    return out


def spacegroup_number(structure: Structure, symprec: float = DEFAULT_SYMPREC) -> int:
    """International number of ``structure``'s space group (spglib via pymatgen)."""
    return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())


# -- standard settings (spglib) ------------------------------------------------------------------
#: spglib's primitive basis in conventional coordinates, (a_p b_p c_p) = (a_c b_c c_c) @ P, per
#: centring letter of the Hall symbol (spglib documentation, "transformation to the primitive cell").
CENTRING_TO_PRIMITIVE = {
    "P": np.eye(3),
    "A": np.array([[1, 0, 0], [0, 0.5, -0.5], [0, 0.5, 0.5]]),
    "B": np.array([[0.5, 0, -0.5], [0, 1, 0], [0.5, 0, 0.5]]),
    "C": np.array([[0.5, 0.5, 0], [-0.5, 0.5, 0], [0, 0, 1]]),
    "I": np.array([[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]]),
    "F": np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]),
    "R": np.array([[2 / 3, -1 / 3, -1 / 3], [1 / 3, 1 / 3, -2 / 3], [1 / 3, 1 / 3, 1 / 3]]),
}


@lru_cache(maxsize=230)
def standard_setting(number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rotations, translations, to_primitive) of spglib's default setting of group ``number``.

    The operations act on fractional coordinates of the conventional standard cell (centring
    translations included); ``to_primitive`` is the matrix P of :data:`CENTRING_TO_PRIMITIVE`.
    This is the setting :func:`standard_primitive` puts crystals in.
    """
    import spglib

    if not 1 <= int(number) <= 230:
        raise ValueError(f"space group number {number} outside 1..230")
    hall = next(h for h in range(1, 531) if spglib.get_spacegroup_type(h).number == int(number))
    ops = spglib.get_symmetry_from_database(hall)
    centring = spglib.get_spacegroup_type(hall).hall_symbol.lstrip("-")[0]
    return ops["rotations"].astype(float), ops["translations"], CENTRING_TO_PRIMITIVE[centring]


def standard_primitive(structure: Structure, symprec: float = DEFAULT_SYMPREC) -> tuple[Structure, int]:
    """The crystal in spglib's standard primitive cell (idealised), and its space group number.

    One cell choice and origin per space group for every crystal: what a network that reads
    fractional coordinates next to the group's operations can learn from, and the frame the
    space-group projection of generated samples assumes.
    """
    import spglib

    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    if dataset is None:
        raise ValueError(f"spglib found no symmetry for {structure.composition.reduced_formula} at symprec {symprec}")
    lattice, frac, numbers = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False, symprec=symprec)
    standard = Structure(lattice, [int(z) for z in numbers], frac)
    return standard, int(dataset.number)
