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
