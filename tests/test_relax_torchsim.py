"""The TorchSim relaxer backend (``make test-torchsim``: Python >= 3.12 with torch-sim-atomistic and sevenn).

Same cells as the crystalgen relaxer's tests, SevenNet-0 from the sevenn wheel: TorchSim's FIRE +
Frechet cell filter must land where crystalgen's batched FIRE and ASE's FIRE land, and bad inputs
must fail with reasons while the rest converge.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgen.potentials import check_potential, load_potential
from crystalgen.relax import relax_structures
from test_relax import _unrelaxed

pytestmark = [
    pytest.mark.torchsim,
    pytest.mark.skipif(importlib.util.find_spec("torch_sim") is None or importlib.util.find_spec("sevenn") is None,
                       reason="needs torch-sim-atomistic and sevenn (make install-torchsim)"),
]
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def sevennet():
    potential = load_potential("sevenn:7net-0", device="cpu")
    check_potential(potential, use_cache=False)  # same guard in this environment
    return potential


@pytest.fixture(scope="module")
def both(sevennet):
    from crystalgen.relax_torchsim import relax_structures_torchsim

    cells = _unrelaxed()
    return (relax_structures_torchsim(cells, sevennet, fmax=0.05, max_steps=300, progress=False),
            relax_structures(cells, sevennet, fmax=0.05, max_steps=300, progress=False))


def test_torchsim_relaxes_like_crystalgen_and_ase(sevennet, both):
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor
    from sevenn.calculator import SevenNetCalculator

    torchsim, ours = both
    for structure, ts_result, our_result in zip(_unrelaxed(), torchsim, ours, strict=True):
        assert ts_result.ok and ts_result.converged and ts_result.fmax < 0.05, ts_result.error
        assert ts_result.steps > 0 and ts_result.energy_per_atom < sevennet.predict([structure])[0].energy_per_atom - 1e-3
        assert ts_result.energy_per_atom == pytest.approx(our_result.energy_per_atom, abs=0.005)
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = SevenNetCalculator("7net-0", device="cpu")
        FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=0.05, steps=300)
        assert ts_result.energy_per_atom == pytest.approx(atoms.get_potential_energy() / len(atoms), abs=0.005)
        np.testing.assert_allclose(ts_result.structure.lattice.abc, atoms.cell.cellpar()[:3], rtol=0.01)
        # the reported energy is the model's energy of the returned structure
        assert sevennet.predict([ts_result.structure])[0].energy == pytest.approx(ts_result.energy, abs=1e-3)


def test_bad_inputs_fail_with_reasons_while_the_rest_converge(sevennet, both):
    from crystalgen.relax_torchsim import relax_structures_torchsim

    good = _unrelaxed()[:2]
    overlapping = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.01, 0, 0]])
    unsupported = Structure(Lattice.cubic(3.5), ["Og"], [[0, 0, 0]])
    results = relax_structures_torchsim([good[0], overlapping, good[1], unsupported], sevennet, fmax=0.05,
                                        max_steps=300, progress=False)
    assert results[0].converged and results[2].converged
    assert results[1].error.startswith("overlapping atoms") and "Og" in results[3].error
    assert results[0].energy_per_atom == pytest.approx(both[0][0].energy_per_atom, abs=1e-4)


def test_models_torchsim_does_not_wrap_are_refused():
    from crystalgen.relax_torchsim import torchsim_model

    with pytest.raises(ValueError, match="TorchSim has no wrapper for TensorNet"):
        torchsim_model(load_potential())
