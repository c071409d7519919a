"""The batched FIRE relaxer: same answer as ASE one-at-a-time, failures isolated, queue refilling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgen.potentials import Potential, PotentialResult, load_potential
from crystalgen.relax import relax_structures, validate_structure

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def potential():
    return load_potential()


def _rock_salt(a: str, b: str, a0: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a0), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()


def _unrelaxed() -> list[Structure]:
    """Small cells away from equilibrium in volume, shape and internal coordinates."""
    nacl = _rock_salt("Na", "Cl", 5.45)
    mgo = _rock_salt("Mg", "O", 4.40)
    mgo.perturb(0.08, min_distance=0.04, seed=0)
    tab2 = Structure(Lattice.hexagonal(3.2, 3.1), ["Ta", "B", "B"], [[0, 0, 0], [1 / 3, 2 / 3, 0.45], [2 / 3, 1 / 3, 0.5]])
    w = Structure(Lattice.tetragonal(3.05, 3.3), ["W", "W"], [[0, 0, 0], [0.5, 0.52, 0.5]])
    return [nacl, mgo, tab2, w]


def _ase_relax(structure: Structure, potential, fmax: float, steps: int) -> tuple[float, np.ndarray]:
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from matgl.ext._ase_pyg import PESCalculator  # matgl's own calculator, PyG backend
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = PESCalculator(potential.model, stress_unit="eV/A3")
    FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=fmax, steps=steps)
    return atoms.get_potential_energy() / len(atoms), atoms.cell.cellpar()


@pytest.fixture(scope="module")
def batched(potential):
    return relax_structures(_unrelaxed(), potential, fmax=0.05, max_steps=300, progress=False)


def test_batched_relaxer_matches_ase_fire_with_frechet_filter(potential, batched):
    structures, results = _unrelaxed(), batched
    for structure, result in zip(structures, results, strict=True):
        assert result.ok and result.converged, result.error
        assert result.fmax < 0.05
        ase_energy, ase_cellpar = _ase_relax(structure, potential, fmax=0.05, steps=300)
        assert result.energy_per_atom == pytest.approx(ase_energy, abs=0.005)
        np.testing.assert_allclose(result.structure.lattice.parameters[:3], ase_cellpar[:3], rtol=0.01)
        np.testing.assert_allclose(result.structure.lattice.parameters[3:], ase_cellpar[3:], atol=0.5)
        # relaxation lowers the energy and really moves the cell
        assert result.energy_per_atom < potential.predict([structure])[0].energy_per_atom - 1e-3


def test_bad_inputs_fail_with_reasons_while_the_rest_converge(potential, batched):
    good = _unrelaxed()[:2]
    overlapping = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.01, 0, 0]])
    collapsed = Structure(Lattice([[3, 0, 0], [0, 3, 0], [0, 0, 0.05]]), ["W"], [[0, 0, 0]])
    unsupported = Structure(Lattice.cubic(3.5), ["Am"], [[0, 0, 0]])
    batch = [good[0], overlapping, collapsed, good[1], unsupported]
    results = relax_structures(batch, potential, fmax=0.05, max_steps=300, progress=False)
    assert results[0].converged and results[3].converged
    assert results[1].error.startswith("overlapping atoms") and not results[1].converged
    assert results[2].error.startswith("collapsed cell")
    assert "Am" in results[4].error
    assert results[0].energy_per_atom == pytest.approx(batched[0].energy_per_atom, abs=1e-4)
    assert results[3].energy_per_atom == pytest.approx(batched[1].energy_per_atom, abs=1e-4)


class _PoisonedPotential(Potential):
    """The real potential, except that structures containing Cl get NaN energies (a diverging model)."""

    def __init__(self, inner):
        self.inner, self.name, self.version, self.elements = inner, inner.name, inner.version, inner.elements

    def predict(self, structures):
        results = self.inner.predict(structures)
        return [
            PotentialResult(float("nan"), r.forces, r.stress, r.n_sites) if "Cl" in s.composition else r
            for s, r in zip(structures, results, strict=True)
        ]


def test_nan_energy_fails_only_that_structure(potential):
    structures = _unrelaxed()[:2]
    results = relax_structures(structures, _PoisonedPotential(potential), fmax=0.05, max_steps=300, progress=False)
    assert results[0].error.startswith("non-finite energy")
    assert results[1].converged


def test_small_batch_size_refills_from_the_queue(potential, batched):
    structures, full = _unrelaxed(), batched
    capped = relax_structures(structures, potential, fmax=0.05, max_steps=300, batch_size=2, progress=False)
    for a, b in zip(full, capped, strict=True):  # float32 batch noise may shift a step or two
        assert b.converged and abs(b.steps - a.steps) <= 3
        assert b.energy_per_atom == pytest.approx(a.energy_per_atom, abs=1e-3)
        np.testing.assert_allclose(b.structure.lattice.abc, a.structure.lattice.abc, rtol=0.005)


def test_max_steps_stops_without_error(potential):
    result = relax_structures(_unrelaxed()[1:2], potential, fmax=1e-4, max_steps=3, progress=False)[0]
    assert result.ok and not result.converged and result.steps == 3 and result.energy_per_atom is not None


def test_validate_structure_accepts_real_crystals_and_names_collapses():
    assert all(validate_structure(s) is None for s in _unrelaxed())
    n2 = Structure(Lattice.cubic(6.0), ["N", "N"], [[0, 0, 0], [1.1 / 6, 0, 0]])  # the real N2 bond
    assert validate_structure(n2) is None
    b2 = Structure(Lattice.cubic(6.0), ["B", "B"], [[0, 0, 0], [0.62 / 6, 0, 0]])  # a hole of the potential
    assert validate_structure(b2).startswith("collapsed bond: B-B")
    # W-W at 1.73 Å (0.53 x the covalent sum): TensorNet's PtS-type "WB" at half the normal volume,
    # -1.18 eV/atom below the elements; pymatgen's smaller atomic radii would have let it through
    ww = Structure(Lattice.tetragonal(2.9, 3.46), ["W", "W"], [[0, 0, 0], [0, 0, 0.5]])
    assert validate_structure(ww).startswith("collapsed bond: W-W")
    assert validate_structure(ww, check_bonds=False) is None
    carbide_dimer = Structure(Lattice.cubic(6.0), ["C", "C"], [[0, 0, 0], [1.30 / 6, 0, 0]])  # C2 in CaC2
    assert validate_structure(carbide_dimer) is None


def test_a_bond_collapsing_into_a_hole_stops_the_relaxation_at_once(potential, monkeypatch):
    import crystalgen.relax as relax

    # a B2 dimer at 1.03 Å (0.61 x the covalent sum) falls into TensorNet's short-range hole (0.78 Å),
    # which the final check rejects; from 1.06 Å it relaxes out to 1.59 Å
    dimer = Structure(Lattice.cubic(6.0), ["B", "B"], [[0, 0, 0], [1.03 / 6, 0, 0]])
    early = relax_structures([dimer], potential, fmax=0.05, max_steps=300, progress=False)[0]
    monkeypatch.setattr(relax, "_doomed_reason", lambda *_: None)
    to_the_end = relax_structures([dimer], potential, fmax=0.05, max_steps=300, progress=False)[0]

    assert to_the_end.error.startswith("collapsed bond: B-B")
    assert early.error.startswith("collapsed bond (collapsed again): B-B") and early.error.endswith("stopped early")
    assert early.steps < to_the_end.steps and not early.converged and early.energy is None


def test_generated_cells_that_stay_collapsed_stop_after_the_grace_steps(potential, monkeypatch):
    """Raw samples of the shipped demo model are too dense (DESIGN.md 6): most never open their short bonds."""
    import crystalgen.relax as relax
    from crystalgen.config import CHECKPOINT_DIR
    from crystalgen.sample import sample_structures

    samples = sample_structures(CHECKPOINT_DIR / "demo-cfm-n.pt",
                                [{"formula": "Ta1W1B6", "spacegroup": 191, "formation_energy": -0.3}],
                                samples_per_condition=6, seed=3, device="cpu", symmetry="none")
    cells = [s.pymatgen for s in samples if s.valid]
    steps = relax.OPEN_BONDS_WITHIN + 1  # the run to the end: one step past the grace, then the final check
    early = relax_structures(cells, potential, fmax=0.05, max_steps=steps, progress=False)
    monkeypatch.setattr(relax, "_doomed_reason", lambda *_: None)
    to_the_end = relax_structures(cells, potential, fmax=0.05, max_steps=steps, progress=False)

    stopped = [i for i, r in enumerate(early) if r.error and "not opened within" in r.error]
    assert stopped, [r.error for r in early]
    for i in stopped:
        assert early[i].steps == relax.OPEN_BONDS_WITHIN and to_the_end[i].steps == steps
        assert to_the_end[i].error.startswith(("collapsed bond", "overlapping atoms"))
    for i in set(range(len(cells))) - set(stopped):
        assert early[i].error == to_the_end[i].error and early[i].steps == to_the_end[i].steps


def test_a_short_input_bond_that_relaxation_pushes_apart_is_not_stopped(potential):
    # B-B 0.54 Å in the input (0.32 x the covalent sum): the potential pushes it apart into a valid TaB2
    squeezed = Structure(Lattice.hexagonal(3.1, 3.3), ["Ta", "B", "B"], [[0, 0, 0], [0.45, 0.55, 0.5], [0.55, 0.45, 0.5]])
    assert validate_structure(squeezed, check_bonds=False) is None and validate_structure(squeezed) is not None
    result = relax_structures([squeezed], potential, fmax=0.05, max_steps=300, progress=False)[0]
    assert result.ok and result.converged and validate_structure(result.structure) is None
