"""CUDA paths: mixed-precision training with resume, GPU sampling and GPU relaxation agree with the CPU.

Skipped where no CUDA GPU is visible (CI); run on a GPU node with ``pytest tests/test_gpu.py``
(``benchmarks/gpu_checks.sh`` runs it together with the GPU benchmarks).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgen.checkpoint import load_checkpoint
from crystalgen.potentials import load_potential
from crystalgen.relax import relax_structures
from crystalgen.sample import Condition, sample_structures
from crystalgen.train import Stop, train

from model_helpers import tiny_config, write_tiny_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.jsonl.gz", n_perov=40)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_on_cuda_resumes(dataset, tmp_path, precision):
    config = dict(device="cuda", precision=precision)
    straight = load_checkpoint(train(tiny_config(dataset, tmp_path / "a", **config), progress=False, log=lambda _: None))
    assert all(np.isfinite(m["loss"]) for m in straight["metrics"] if "loss" in m)
    if precision == "fp16":
        assert straight["scaler"].get("scale", 0) > 0  # the loss scaler ran and is checkpointed

    def kill_at_3(step: int) -> None:
        if step == 3:
            raise Stop("simulated kill")

    with pytest.raises(Stop):
        train(tiny_config(dataset, tmp_path / "b", **config), progress=False, on_step=kill_at_3, log=lambda _: None)
    resumed = load_checkpoint(train(tiny_config(dataset, tmp_path / "b", **config), progress=False, log=lambda _: None))
    assert resumed["step"] == straight["step"] == 6
    for key, value in straight["model"].items():
        # cuDNN may pick non-deterministic kernels: the same run, not bit-identical weights
        torch.testing.assert_close(resumed["model"][key].float(), value.float(), rtol=1e-2, atol=2e-3, msg=key)


def test_cuda_sampling_matches_cpu_sampling():
    conditions = [
        Condition(formula="SrTiO3", spacegroup=221, formation_energy=-0.4),
        Condition(formula="BaZrO3", spacegroup=221, formation_energy=0.2),
        Condition(formula="KNbO3", spacegroup=99, formation_energy=-0.1),
    ]
    kwargs = dict(samples_per_condition=4, steps=20, seed=3)
    on_cpu = sample_structures(None, conditions, device="cpu", **kwargs)
    on_gpu = sample_structures(None, conditions, device="cuda", **kwargs)
    same = 0
    for a, b in zip(on_cpu, on_gpu, strict=True):
        assert a.key == b.key
        if a.structure and b.structure:
            sa, sb = Structure.from_dict(a.structure), Structure.from_dict(b.structure)
            same += sa.composition == sb.composition and abs(sa.volume / sb.volume - 1) < 0.01
    assert same >= 0.75 * len(on_cpu), f"only {same}/{len(on_cpu)} CUDA samples match their CPU twins"


def test_cuda_relaxation_matches_cpu():
    structures = [
        Structure(Lattice.cubic(3.4), ["W", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.hexagonal(3.1, 3.3), ["Ta", "B", "B"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]]),
    ]
    structures[1].perturb(0.05, min_distance=0.02, seed=0)
    on_gpu = relax_structures(structures, load_potential(device="cuda"), fmax=0.05, progress=False)
    on_cpu = relax_structures(structures, load_potential(device="cpu"), fmax=0.05, progress=False)
    for g, c in zip(on_gpu, on_cpu, strict=True):
        assert g.converged and c.converged
        assert g.energy_per_atom == pytest.approx(c.energy_per_atom, abs=5e-3)
        np.testing.assert_allclose(g.structure.lattice.abc, c.structure.lattice.abc, rtol=0.01)
