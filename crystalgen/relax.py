"""Batched FIRE relaxation of many structures at once: one potential call per optimisation step.

Each structure is optimised exactly like ``ase.optimize.FIRE(FrechetCellFilter(atoms))`` (same
FIRE constants, same degrees of freedom: atom positions in the undeformed cell plus the matrix log
of the cell deformation, same ``fmax`` test on atom and cell forces), but all structures in flight
share one batched forward pass of the potential per step. A structure leaves the batch as soon as it
converges, hits ``max_steps`` or fails, and the next one from the queue takes its place, so the batch
stays full. Inputs the potential cannot meaningfully evaluate (overlapping atoms, collapsed cells,
unsupported elements) and runs that go non-physical (NaN energies, exploding or imploding volume)
end as failed results with a reason; they never stop the others. A run that falls into a hole of the
potential (atoms overlapping, a bond collapsing while relaxing) fails as soon as that happens
instead of after its remaining steps: the final check would reject it anyway (``_doomed_reason``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
from pymatgen.core import Lattice, Structure
from scipy.linalg import expm, expm_frechet

from crystalgen.potentials.base import Potential, PotentialResult

# ase.optimize.FIRE defaults
FIRE_DT = 0.1
FIRE_MAXSTEP = 0.2
FIRE_DTMAX = 1.0
FIRE_NMIN = 5
FIRE_FINC = 1.1
FIRE_FDEC = 0.5
FIRE_ASTART = 0.1
FIRE_FA = 0.99

MIN_DISTANCE = 0.5  # Å: closer sites are "overlapping atoms"
#: a bond shorter than this fraction of the sum of covalent radii (Cordero 2008) is a collapse into a
#: hole of the potential, not chemistry. Seen with TensorNet: B-B 0.62 Å and Fe-Fe 0.88 Å in N2-type
#: cells (-7.9 / -21.8 eV/atom), W-W 1.73 Å in a PtS-type WB at half the normal volume (-1.18 eV/atom
#: formation energy). Real bonds stay above ~0.8 (C-C in carbide C2 dimers ~0.89).
MIN_BOND_FRACTION = 0.6
MIN_CELL_HEIGHT = 0.8  # Å: a thinner cell is "collapsed"
MIN_VOLUME_PER_ATOM = 1.5  # Å^3
MAX_VOLUME_PER_ATOM = 250.0  # Å^3: beyond this the cell has "exploded"
MAX_VOLUME_CHANGE = 4.0  # factor vs the input volume, either way
MIN_ENERGY_PER_ATOM = -30.0  # eV/atom: no element goes below ~-13 eV/atom in PBE
#: steps a relaxation gets to open a collapsed bond of its input before it is stopped as failed. On
#: generated Ta-W-B cells (benchmarks/relax_failures.py) the bonds that open do so within a few steps,
#: and runs still collapsed at step 50 stay collapsed to the step limit.
OPEN_BONDS_WITHIN = 50


@dataclass
class RelaxResult:
    """Outcome of one relaxation; ``error`` is ``None`` unless it failed."""

    structure: Structure  # final structure (the input when validation failed)
    energy: float | None  # total energy of ``structure``, eV
    energy_per_atom: float | None
    steps: int  # FIRE steps taken
    converged: bool
    fmax: float | None = None  # largest atom/cell force at the end, eV/Å
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _FireState:
    """FIRE + Frechet-cell-filter state of one structure in flight."""

    index: int
    species: list
    orig_cell: np.ndarray  # (3, 3) rows are lattice vectors
    undeformed_pos: np.ndarray  # (n, 3) Cartesian positions divided by the deformation
    log_deform: np.ndarray  # (3, 3) matrix log of the deformation gradient, times exp_cell_factor
    relax_cell: bool
    initial_volume: float
    velocity: np.ndarray | None = None
    dt: float = FIRE_DT
    alpha: float = FIRE_ASTART
    n_positive: int = 0
    steps: int = 0
    bonds_opened: bool = False  # the shortest bond has been at least MIN_BOND_FRACTION (input or since)
    result: RelaxResult | None = field(default=None, repr=False)

    @property
    def n_atoms(self) -> int:
        return len(self.species)

    @property
    def exp_cell_factor(self) -> float:
        return float(self.n_atoms)

    def deform_grad(self) -> np.ndarray:
        return expm(self.log_deform / self.exp_cell_factor)

    def structure(self) -> Structure:
        deform_t = self.deform_grad().T
        return Structure(
            Lattice(self.orig_cell @ deform_t),
            self.species,
            self.undeformed_pos @ deform_t,
            coords_are_cartesian=True,
        )

    def filter_forces(self, prediction: PotentialResult, volume: float) -> np.ndarray:
        """Forces on the (n + 3) filter coordinates, as ``FrechetCellFilter.get_forces`` computes them."""
        deform = self.deform_grad()
        atom_forces = prediction.forces @ deform
        if not self.relax_cell:
            return np.vstack([atom_forces, np.zeros((3, 3))])
        virial = -volume * prediction.stress
        ucf_cell_grad = virial @ np.linalg.inv(deform.T)
        # sum_ij expm'(L)[E_mn]_ij G_ij for every direction E_mn == expm'(L^T)[G]_mn (adjoint of
        # the Frechet derivative), so one call replaces ASE's nine.
        log_force = expm_frechet(self.log_deform.T / self.exp_cell_factor, ucf_cell_grad, compute_expm=False)
        return np.vstack([atom_forces, log_force / self.exp_cell_factor])

    def fire_step(self, forces: np.ndarray) -> None:
        """One ``ase.optimize.FIRE.step`` on the flattened filter coordinates."""
        if self.velocity is None:
            self.velocity = np.zeros_like(forces)
        else:
            vf = np.vdot(forces, self.velocity)
            if vf > 0.0:
                self.velocity = (1.0 - self.alpha) * self.velocity + self.alpha * forces / np.sqrt(
                    np.vdot(forces, forces)
                ) * np.sqrt(np.vdot(self.velocity, self.velocity))
                if self.n_positive > FIRE_NMIN:
                    self.dt = min(self.dt * FIRE_FINC, FIRE_DTMAX)
                    self.alpha *= FIRE_FA
                self.n_positive += 1
            else:
                self.velocity[:] = 0.0
                self.alpha = FIRE_ASTART
                self.dt *= FIRE_FDEC
                self.n_positive = 0
        self.velocity += self.dt * forces
        dr = self.dt * self.velocity
        norm = np.sqrt(np.vdot(dr, dr))
        if norm > FIRE_MAXSTEP:
            dr *= FIRE_MAXSTEP / norm
        n = self.n_atoms
        self.undeformed_pos = self.undeformed_pos + dr[:n]
        if self.relax_cell:
            self.log_deform = self.log_deform + dr[n:]
        self.steps += 1


def validate_structure(
    structure: Structure, potential: Potential | None = None, check_bonds: bool = True
) -> str | None:
    """Why ``structure`` cannot be relaxed meaningfully, or ``None`` when it can.

    ``check_bonds=False`` skips the collapsed-bond test: short bonds in an *input* (a generated
    structure) are what relaxation pushes apart; in an *output* they mark a hole of the potential.
    """
    lattice = structure.lattice
    matrix = lattice.matrix
    if not np.isfinite(matrix).all() or not np.isfinite(structure.frac_coords).all():
        return "non-finite lattice or coordinates"
    volume = abs(np.linalg.det(matrix))
    heights = [volume / np.linalg.norm(np.cross(matrix[i - 2], matrix[i - 1])) if volume > 0 else 0.0 for i in range(3)]
    if min(heights) < MIN_CELL_HEIGHT or volume / len(structure) < MIN_VOLUME_PER_ATOM:
        return (
            f"collapsed cell: volume {volume:.3g} Å^3 ({volume / len(structure):.3g} Å^3/atom), "
            f"thinnest cell height {min(heights):.3g} Å"
        )
    if volume / len(structure) > MAX_VOLUME_PER_ATOM:
        return f"cell too large: {volume / len(structure):.3g} Å^3/atom"
    if len(structure) > 1:
        distances = _distances(structure)
        i, j = np.unravel_index(np.argmin(distances), distances.shape)
        if distances[i, j] < MIN_DISTANCE:
            return f"overlapping atoms: sites {i} and {j} are {distances[i, j]:.3f} Å apart (< {MIN_DISTANCE} Å)"
        if check_bonds and (bond := _collapsed_bond(structure, distances)):
            return bond
    if potential is not None and (missing := potential.unsupported_elements(structure)):
        return f"{potential.name} does not support element(s) {sorted(missing)}"
    return None


def _shortest_bond(structure: Structure, distances: np.ndarray) -> tuple[float, int, int]:
    """(distance / sum of covalent radii, i, j) of the shortest bond relative to its atoms' sizes."""
    radii = np.array([_covalent_radius(site.specie) for site in structure])
    ratio = distances / (radii[:, None] + radii[None, :])
    i, j = np.unravel_index(np.argmin(ratio), ratio.shape)
    return float(ratio[i, j]), int(i), int(j)


def _distances(structure: Structure) -> np.ndarray:
    """Shortest periodic distances between sites, with a huge diagonal so a site is never its own neighbour."""
    return structure.distance_matrix + np.eye(len(structure)) * 1e9


def _collapsed_bond(structure: Structure, distances: np.ndarray) -> str | None:
    ratio, i, j = _shortest_bond(structure, distances)
    if ratio >= MIN_BOND_FRACTION:
        return None
    return (
        f"collapsed bond: {structure[i].specie}-{structure[j].specie} sites {i} and {j} are "
        f"{distances[i, j]:.3f} Å apart (< {MIN_BOND_FRACTION} x the sum of covalent radii)"
    )


def _covalent_radius(specie) -> float:
    element = getattr(specie, "element", specie)
    radius = CovalentRadius.radius.get(getattr(element, "symbol", str(element))) or getattr(element, "atomic_radius", None)
    return float(radius) if radius else 1.0


def _runaway_reason(state: _FireState, prediction: PotentialResult, volume: float) -> str | None:
    if not prediction.is_finite:
        return f"non-finite energy/forces/stress at step {state.steps}"
    if prediction.energy_per_atom < MIN_ENERGY_PER_ATOM:
        return f"energy diverged to {prediction.energy_per_atom:.2f} eV/atom at step {state.steps}"
    ratio = volume / state.initial_volume
    if ratio > MAX_VOLUME_CHANGE or volume / state.n_atoms > MAX_VOLUME_PER_ATOM:
        return f"volume exploded ({ratio:.2f}x the input) at step {state.steps}"
    if ratio < 1.0 / MAX_VOLUME_CHANGE:
        return f"volume collapsed ({ratio:.2f}x the input) at step {state.steps}"
    return None


def _doomed_reason(state: _FireState, structure: Structure) -> str | None:
    """Why a relaxation in flight can only end failing ``validate_structure``, so it should stop now.

    A bond shorter than ``MIN_BOND_FRACTION`` of the covalent sum (or atoms closer than
    ``MIN_DISTANCE``) that was not short before, or that relaxation has not opened within
    ``OPEN_BONDS_WITHIN`` steps, is a fall into a hole of the potential: FIRE goes downhill and does not
    climb out, and the final check would reject the structure after its remaining steps.
    """
    if len(structure) < 2:
        return None
    distances = _distances(structure)
    ratio, i, j = _shortest_bond(structure, distances)
    if ratio >= MIN_BOND_FRACTION and distances.min() >= MIN_DISTANCE:
        state.bonds_opened = True
        return None
    if not state.bonds_opened and state.steps < OPEN_BONDS_WITHIN:
        return None
    why = "collapsed again" if state.bonds_opened else f"not opened within {OPEN_BONDS_WITHIN} steps"
    return (f"collapsed bond ({why}): {structure[i].specie}-{structure[j].specie} sites {i} and {j} are "
            f"{distances[i, j]:.3f} Å apart (< {MIN_BOND_FRACTION} x the sum of covalent radii) at step "
            f"{state.steps}; stopped early")


def _predict_isolating_failures(
    potential: Potential, structures: list[Structure]
) -> list[PotentialResult | Exception]:
    """One batched call; if it raises, evaluate one by one so only the culprit fails."""
    try:
        return list(potential.predict(structures))
    except Exception:  # noqa: BLE001 - a bad structure must not take the batch down
        if len(structures) == 1:
            raise
    out: list[PotentialResult | Exception] = []
    for structure in structures:
        try:
            out.append(potential.predict([structure])[0])
        except Exception as exc:  # noqa: BLE001
            out.append(exc)
    return out


def _new_state(index: int, structure: Structure, relax_cell: bool) -> _FireState:
    return _FireState(
        index=index,
        species=[site.species for site in structure],
        orig_cell=structure.lattice.matrix.copy(),
        undeformed_pos=structure.cart_coords.copy(),
        log_deform=np.zeros((3, 3)),
        relax_cell=relax_cell,
        initial_volume=structure.volume,
    )


def relax_structures(
    structures: Sequence[Structure],
    potential: Potential,
    fmax: float = 0.05,
    max_steps: int = 500,
    relax_cell: bool = True,
    batch_size: int = 64,
    progress: bool = True,
    description: str = "relaxing",
) -> list[RelaxResult]:
    """Relax ``structures`` with ``potential``; results come back in input order.

    ``fmax`` (eV/Å) applies to atom forces and to the cell forces of the Frechet cell filter (the
    virial divided by the number of atoms), as in ASE. ``batch_size`` caps how many structures are
    evaluated together (memory); finished ones are replaced from the queue.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results: list[RelaxResult | None] = [None] * len(structures)
    queue: deque[_FireState] = deque()
    for index, structure in enumerate(structures):
        if reason := validate_structure(structure, potential, check_bonds=False):
            results[index] = RelaxResult(structure, None, None, 0, False, error=reason)
        else:
            queue.append(_new_state(index, structure, relax_cell))

    counts = {"converged": 0, "failed": sum(r is not None for r in results)}
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        disable=not progress,
        transient=False,
    )
    with bar:
        task = bar.add_task(description, total=len(structures), completed=counts["failed"], status="")
        active: list[_FireState] = []
        while queue or active:
            while queue and len(active) < batch_size:
                active.append(queue.popleft())
            current = [state.structure() for state in active]
            predictions = _predict_isolating_failures(potential, current)
            still_running = []
            for state, structure, prediction in zip(active, current, predictions, strict=True):
                _advance(state, structure, prediction, fmax, max_steps)
                if state.result is None:
                    still_running.append(state)
                    continue
                results[state.index] = state.result
                if state.result.error is not None:
                    counts["failed"] += 1
                elif state.result.converged:
                    counts["converged"] += 1
                bar.advance(task)
            active = still_running
            done = sum(r is not None for r in results)
            bar.update(
                task,
                status=f"converged {counts['converged']}, failed {counts['failed']}, "
                f"unconverged {done - counts['converged'] - counts['failed']}, in batch {len(active)}",
            )
    return results  # type: ignore[return-value]


def _advance(
    state: _FireState,
    structure: Structure,
    prediction: PotentialResult | Exception,
    fmax: float,
    max_steps: int,
) -> None:
    """Check one structure after an evaluation; either finish it or take a FIRE step."""
    if isinstance(prediction, Exception):
        state.result = RelaxResult(structure, None, None, state.steps, False, error=f"potential failed: {prediction}")
        return
    volume = structure.volume
    if reason := _runaway_reason(state, prediction, volume) or _doomed_reason(state, structure):
        state.result = RelaxResult(structure, None, None, state.steps, False, error=reason)
        return
    forces = state.filter_forces(prediction, volume)
    current_fmax = float(np.linalg.norm(forces, axis=1).max())
    converged = current_fmax < fmax
    if converged or state.steps >= max_steps:
        error = validate_structure(structure)
        final = structure.copy()
        final.translate_sites(range(len(final)), np.zeros(3), to_unit_cell=True)
        state.result = RelaxResult(
            final,
            prediction.energy,
            prediction.energy_per_atom,
            state.steps,
            converged and error is None,
            current_fmax,
            error,
        )
        return
    state.fire_step(forces)
