"""Rescue of near-miss samples: cells whose only fault is atoms too close or a cell too small.

The shipped model places the right atoms in cells of about the right shape, but too dense (median
7.1 Å^3/atom on the paper's Ta-W-B cells, where borides sit near 9) and with pairs of atoms
on top of each other; the relaxer refuses such cells (``crystalgen.relax.validate_structure``:
overlapping atoms, collapsed bonds, collapsed cells). Two cheap steps, no potential involved:

1. **Volume:** a cell below :func:`~crystalgen.volume.expected_volume` is scaled up isotropically to
   it, at most by ``MAX_VOLUME_GROWTH``; fractional coordinates (the arrangement) are unchanged.
2. **Repulsive relaxation:** if pairs are still too close, atoms are pushed apart at fixed cell by a
   soft harmonic repulsion that acts only between atoms closer than ``RESCUE_CONTACT`` (0.65) x the
   sum of their covalent radii (L-BFGS): just clear of the relaxer's collapsed-bond threshold (0.6),
   the smallest push that makes the cell relaxable; the potential does the rest. It is refused when
   any atom would move more than ``max_displacement`` (default 1.0 Å).

On 72 samples of the shipped ``demo-cfm-n.pt`` (Ta1W1B6, Ta1W2B5, Ta2W1B5 x groups 191, 187, 12,
38, 65, 1 x 4, seed 0; none valid as generated) the largest move per cell is 0.49-1.73 Å (median
0.74): 61 are repaired within 1.0 Å, 69 within 1.2 Å.

A repair is accepted only when the result passes the relaxer's own checks. A valid input is
returned untouched, and every change is described in :attr:`Rescue.actions` for the candidate's
history: nothing is rescued silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure
from pymatgen.optimization.neighbors import find_points_in_spheres
from scipy.optimize import minimize

from crystalgen.relax import _covalent_radius, validate_structure
from crystalgen.volume import contact_ratio, expected_volume, scale_volume

MAX_VOLUME_GROWTH = 2.0  # the cell may at most double its volume
MAX_DISPLACEMENT = 1.0  # Å: by default the farthest any atom may be pushed
RESCUE_CONTACT = 0.65  # pairs are pushed to this fraction of their covalent-radius sum
MAX_ITERATIONS = 300  # L-BFGS iterations of the repulsive relaxation


@dataclass(frozen=True)
class Rescue:
    """The outcome of :func:`rescue`: the structure to use (``None`` when it cannot be repaired within
    the bounds), what was done to it, and why it could not be repaired."""

    structure: Structure | None
    actions: tuple[str, ...] = ()
    reason: str = ""

    @property
    def rescued(self) -> bool:
        """A repaired structure (not an untouched valid one, not a failure)."""
        return self.structure is not None and bool(self.actions)

    @property
    def description(self) -> str:
        return "; ".join(self.actions) if self.actions else (self.reason or "valid as generated, not touched")


def rescue(structure: Structure, max_displacement: float = MAX_DISPLACEMENT) -> Rescue:
    """Repair ``structure`` if its only faults are atoms too close or a cell too small, moving no atom
    more than ``max_displacement`` Å."""
    fault = validate_structure(structure)
    if fault is None:
        return Rescue(structure)
    if not (np.isfinite(structure.lattice.matrix).all() and np.isfinite(structure.frac_coords).all()):
        return Rescue(None, reason=f"not repairable: {fault}")
    actions: list[str] = []
    repaired = structure
    n = len(structure)
    expected = expected_volume(structure.composition)
    target = min(expected, structure.volume * MAX_VOLUME_GROWTH)
    if target > structure.volume * 1.001:
        repaired = scale_volume(structure, target, min_contact=0.0)
        actions.append(f"volume scaled {structure.volume / n:.2f} -> {target / n:.2f} Å^3/atom "
                       f"(expected {expected / n:.2f}, at most x{MAX_VOLUME_GROWTH:g})")
    if validate_structure(repaired) is not None:
        before = contact_ratio(repaired)
        repaired, moved, site = _push_apart(repaired, RESCUE_CONTACT)
        if moved > max_displacement:
            return Rescue(None, tuple(actions), f"not repairable within bounds: pushing atoms apart moves site {site} "
                                                f"{moved:.2f} Å (> {max_displacement:g} Å); was: {fault}")
        actions.append(f"repulsive relaxation at fixed cell: closest pair {before:.2f} -> {contact_ratio(repaired):.2f} "
                       f"x covalent radii, largest move {moved:.2f} Å (site {site})")
    if (left := validate_structure(repaired)) is not None:
        return Rescue(None, tuple(actions), f"still invalid after repair: {left}; was: {fault}")
    return Rescue(repaired, tuple(actions))


def _push_apart(structure: Structure, contact: float) -> tuple[Structure, float, int]:
    """Minimise a harmonic repulsion between atoms closer than ``contact`` x their covalent-radius sum,
    at fixed cell; the relaxed structure, the largest displacement (Å) and the site that made it."""
    radii = np.array([_covalent_radius(site.specie) for site in structure])
    matrix = np.ascontiguousarray(structure.lattice.matrix, dtype=float)
    pbc = np.ones(3, dtype=np.int64)
    cutoff = contact * 2 * float(radii.max())
    start = structure.cart_coords.copy()

    def energy_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        positions = np.ascontiguousarray(flat.reshape(-1, 3))
        centers, neighbors, images, distances = find_points_in_spheres(positions, positions, cutoff, pbc, matrix, tol=1e-8)
        target = contact * (radii[centers] + radii[neighbors])
        close = (distances < target) & (distances > 1e-8)
        centers, neighbors, images, distances, target = (a[close] for a in (centers, neighbors, images, distances, target))
        overlap = target - distances
        vectors = positions[neighbors] + images @ matrix - positions[centers]
        gradient = np.zeros_like(positions)
        np.add.at(gradient, centers, (overlap / distances)[:, None] * vectors)
        return 0.25 * float(np.sum(overlap**2)), gradient.ravel()

    result = minimize(energy_and_gradient, start.ravel(), jac=True, method="L-BFGS-B",
                      options={"maxiter": MAX_ITERATIONS, "gtol": 1e-8, "ftol": 1e-14})
    positions = result.x.reshape(-1, 3)
    moves = np.linalg.norm(positions - start, axis=1)
    relaxed = Structure(structure.lattice, structure.species, positions, coords_are_cartesian=True, to_unit_cell=True)
    return relaxed, float(moves.max()), int(moves.argmax())
