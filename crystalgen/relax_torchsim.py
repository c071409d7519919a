"""TorchSim as a relaxer backend (``prerelax.relaxer: torchsim``) for the models TorchSim wraps.

Why: TorchSim (torch-sim-atomistic) runs FIRE + Frechet cell filter on whole batches on the GPU, with
an in-flight autobatcher that estimates how many structures fit in GPU memory. It wraps MACE, ORB,
SevenNet, MatterSim and FairChem (not matgl, not CHGNet) and needs Python >= 3.12, so it lives in a
second environment (``make install-torchsim``). The results are the same :class:`~crystalgen.relax.RelaxResult`
as crystalgen's relaxer, with the same input and output validity checks.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from crystalgen.potentials.base import Potential
from crystalgen.relax import MAX_VOLUME_CHANGE, MIN_ENERGY_PER_ATOM, RelaxResult, validate_structure

INSTALL_HINT = "the TorchSim environment: `make install-torchsim` (.venv-torchsim, Python >= 3.12)"


def torchsim_model(potential: Potential):
    """``potential`` as a TorchSim model; ``ValueError`` naming what is missing when there is none."""
    if importlib.util.find_spec("torch_sim") is None:
        raise ValueError(f"relaxer torchsim needs torch-sim-atomistic, which is not installed here; run from {INSTALL_HINT}, "
                         "or use relaxer: crystalgen")
    model = potential.torchsim_model()
    if model is None:
        raise ValueError(f"relaxer torchsim: TorchSim has no wrapper for {potential.name} (it wraps MACE, ORB, SevenNet, "
                         "MatterSim and FairChem, not matgl or CHGNet); use relaxer: crystalgen")
    return model


def _autobatcher(model, structures: Sequence[Structure], batch_size: int):
    """On a GPU TorchSim's memory-estimating autobatcher; elsewhere at most ``batch_size`` structures at once."""
    import torch_sim as ts

    if model.device.type == "cuda":
        return ts.InFlightAutoBatcher(model=model, memory_scales_with=model.memory_scales_with, max_memory_padding=0.9)
    largest = sorted((len(s) for s in structures), reverse=True)[:batch_size]
    return ts.InFlightAutoBatcher(model=model, memory_scales_with="n_atoms", max_memory_scaler=sum(largest) + 1)


def relax_structures_torchsim(
    structures: Sequence[Structure],
    potential: Potential,
    fmax: float = 0.05,
    max_steps: int = 500,
    relax_cell: bool = True,
    batch_size: int = 64,
    progress: bool = True,
    description: str = "relaxing (TorchSim)",
    steps_between_swaps: int = 5,
) -> list[RelaxResult]:
    """Relax ``structures`` with TorchSim's FIRE (ASE flavour) + Frechet cell filter; results in input order.

    Same contract as :func:`crystalgen.relax.relax_structures`: ``fmax`` applies to atom and cell
    forces; invalid inputs and runaway results come back as failed results with a reason. TorchSim
    tests convergence every ``steps_between_swaps`` steps (its default 5), so steps may exceed the
    crystalgen relaxer's by up to that many.
    """
    import torch
    import torch_sim as ts

    model = torchsim_model(potential)
    results: list[RelaxResult | None] = [None] * len(structures)
    todo = []
    for index, structure in enumerate(structures):
        if reason := validate_structure(structure, potential, check_bonds=False):
            results[index] = RelaxResult(structure, None, None, 0, False, error=reason)
        else:
            todo.append(index)
    if not todo:
        return results  # type: ignore[return-value]

    inputs = [structures[i] for i in todo]
    batcher = _autobatcher(model, inputs, batch_size)
    steps = torch.zeros(len(inputs), dtype=torch.long)
    init_fn, step_fn = ts.OPTIM_REGISTRY[ts.Optimizer.fire]

    def counted_step(state, model, **kwargs):
        steps[batcher.current_idx] += 1
        return step_fn(state=state, model=model, **kwargs)

    final = ts.optimize(
        system=inputs,
        model=model,
        optimizer=(init_fn, counted_step),
        convergence_fn=ts.generate_force_convergence_fn(force_tol=fmax, include_cell_forces=relax_cell),
        max_steps=max_steps,
        steps_between_swaps=steps_between_swaps,
        autobatcher=batcher,
        pbar={"desc": description} if progress else False,
        init_kwargs={"cell_filter": ts.CellFilter.frechet} if relax_cell else None,
    )
    atom_fmax = ts.system_wise_max_force(final).detach().cpu().numpy()
    if relax_cell:
        cell_fmax = final.cell_forces.norm(dim=2).max(dim=1).values.detach().cpu().numpy()
        atom_fmax = np.maximum(atom_fmax, cell_fmax)
    energies = final.energy.detach().double().cpu().numpy().reshape(-1)
    for k, (index, relaxed) in enumerate(zip(todo, final.to_structures(), strict=True)):
        results[index] = _result(structures[index], relaxed, float(energies[k]), int(steps[k]), float(atom_fmax[k]), fmax)
    return results  # type: ignore[return-value]


def _result(initial: Structure, relaxed: Structure, energy: float, steps: int, current_fmax: float,
            fmax: float) -> RelaxResult:
    """The relaxed structure checked like crystalgen's relaxer checks its own (runaway, collapsed bonds)."""
    n = len(relaxed)
    ratio = relaxed.volume / initial.volume
    if not np.isfinite(energy) or not np.isfinite(relaxed.lattice.matrix).all():
        error = f"non-finite energy or cell after {steps} steps"
    elif energy / n < MIN_ENERGY_PER_ATOM:
        error = f"energy diverged to {energy / n:.2f} eV/atom after {steps} steps"
    elif not 1 / MAX_VOLUME_CHANGE <= ratio <= MAX_VOLUME_CHANGE:
        error = f"volume changed {ratio:.2f}x the input after {steps} steps"
    else:
        error = validate_structure(relaxed)
    if error is not None:
        return RelaxResult(relaxed, None, None, steps, False, current_fmax, error)
    relaxed.translate_sites(range(n), np.zeros(3), to_unit_cell=True)
    return RelaxResult(relaxed, energy, energy / n, steps, current_fmax < fmax, current_fmax, None)
