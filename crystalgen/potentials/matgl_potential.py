"""matgl potentials read from a local model folder, evaluated as one batched graph.

matgl keeps two graph backends and picks one per process (``MATGL_BACKEND``, read at import):
PyG (TensorNet; the default here, runs on any recent torch) and DGL (the classic M3GNet weights,
which give correct energies only with dgl 2.1.0 on torch <= 2.2.1). :func:`open_matgl_potential`
returns the predictor for the backend this process runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from crystalgen.potentials.base import EV_PER_A3_TO_GPA, Potential, PotentialResult, resolve_device

MODEL_FILES = ("model.json", "model.pt", "state.pt")
DGL_STACK = "dgl 2.1.0 with torch<=2.2.1 (`make install-dgl`, README 'M3GNet potentials')"


def is_matgl_model_dir(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in MODEL_FILES)


def open_matgl_potential(
    model_dir: str | os.PathLike, name: str | None = None, device: str | None = None
) -> Potential:
    """The batched predictor for the model in ``model_dir`` on this process's matgl backend and ``device``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MATGL_BACKEND", "PYG")
    import matgl

    if matgl.config.BACKEND == "DGL":
        from crystalgen.potentials.matgl_dgl_potential import MatglDglPotential

        return MatglDglPotential(model_dir, name, device)
    return MatglPotential(model_dir, name, device)


def load_matgl_model(model_dir: Path, name: str):
    """``matgl.load_model`` on a local folder (never a hub), with errors that name model and stack."""
    import matgl

    if not is_matgl_model_dir(model_dir):
        raise FileNotFoundError(f"{model_dir} is not a matgl model folder (needs {', '.join(MODEL_FILES)})")
    backend = matgl.config.BACKEND
    try:
        model = matgl.load_model(model_dir)
    except Exception as exc:
        raise ValueError(
            f"cannot load matgl model {name!r} from {model_dir} with matgl {matgl.__version__} "
            f"(MATGL_BACKEND={backend}): {exc}. M3GNet weight files need MATGL_BACKEND=DGL with {DGL_STACK}"
        ) from exc
    finally:
        # matgl.load_model silently switches the process-wide backend to DGL for DGL-era files,
        # which would break every PyG model loaded afterwards
        switched = matgl.config.BACKEND != backend
        if switched:
            matgl.set_backend(backend)
    if switched:
        raise ValueError(
            f"{name} is a DGL model (M3GNet weight files): run it with MATGL_BACKEND=DGL and {DGL_STACK}; "
            f"this process runs MATGL_BACKEND={backend}"
        )
    model.eval()
    return model


class MatglFolderPotential(Potential):
    """A matgl ``Potential`` read from a model folder, with the graph converter of this process's backend.

    Subclasses batch the graphs of one :meth:`predict` call their backend's way.
    """

    def __init__(self, model_dir: str | os.PathLike, name: str | None = None, device: str | None = None):
        import matgl
        from matgl.ext.pymatgen import Structure2Graph

        self.model_dir = Path(model_dir)
        self.name = name or self.model_dir.name
        self.device = resolve_device(device)
        self.model = load_matgl_model(self.model_dir, self.name).to(self.device)
        self.version = f"{self.name} (matgl {matgl.__version__}, backend {matgl.config.BACKEND})"
        self.elements = frozenset(self.model.model.element_types)
        self._converter = Structure2Graph(self.model.model.element_types, float(self.model.model.cutoff))


class MatglPotential(MatglFolderPotential):
    """A matgl PyG ``Potential`` (TensorNet) read from a folder with model.json/model.pt/state.pt.

    All structures of one :meth:`predict` call are merged into one PyG ``Batch`` and go through the
    model in a single forward/backward pass (forces and stresses by autograd). Graphs are built on
    the CPU (pymatgen's neighbour search) and moved to the model's device in one transfer.
    """

    def predict(self, structures: Sequence[Structure]) -> list[PotentialResult]:
        import torch
        from torch_geometric.data import Batch

        if not structures:
            return []
        self.require_supported(structures)
        graphs, lattices = [], []
        for structure in structures:
            graph, lattice, _ = self._converter.get_graph(structure)
            graphs.append(graph)
            lattices.append(torch.as_tensor(lattice).reshape(3, 3))
        batch = Batch.from_data_list(graphs).to(self.device)
        lat = torch.stack(lattices).to(self.device)
        if self.model.model.__class__.__name__ == "TensorNet":
            energies, forces, stresses = self._energy_forces_stress(batch, lat)
        else:  # models with state features / line graphs: matgl's own (slower) forward
            state = torch.zeros((len(structures), 2), dtype=lat.dtype, device=lat.device)
            energies, forces, stresses, _ = self.model(batch, lat, state)
            stresses = stresses.reshape(-1, 3, 3) / EV_PER_A3_TO_GPA
        return split_batch(structures, energies, forces, stresses)

    def _energy_forces_stress(self, batch, lat):
        """matgl ``Potential.forward`` for inference: the same energy, but first-order gradients only.

        matgl differentiates with ``create_graph=True`` (needed for training on forces); for
        relaxations that doubles the backward cost, so forces (-dE/dpos) and stress
        ((1/V) dE/dstrain, eV/Å^3) are taken here with a plain backward pass.
        """
        import torch

        potential = self.model
        strain = lat.new_zeros((batch.num_graphs, 3, 3)).requires_grad_(True)
        lattice = lat @ (torch.eye(3, dtype=lat.dtype, device=lat.device) + strain)
        batch.lattice = lattice[batch.batch[batch.edge_index[0]]]
        batch.pbc_offshift = (batch.pbc_offset.unsqueeze(-1) * batch.lattice).sum(dim=1)
        batch.pos = (batch.frac_coords.unsqueeze(-1) * lattice[batch.batch]).sum(dim=1)
        batch.pos.requires_grad_(True)
        energies = potential.model(g=batch, state_attr=None)
        energies = potential.data_std * energies + potential.data_mean
        if potential.calc_repuls:
            energies = energies + potential.repuls(potential.model.element_types, batch)
        if potential.element_refs is not None:
            energies = energies + potential.element_refs(batch).reshape(energies.shape)
        pos_grad, strain_grad = torch.autograd.grad(energies.sum(), [batch.pos, strain])
        volume = torch.abs(torch.det(lattice.detach()))
        return energies.detach(), -pos_grad, strain_grad / volume[:, None, None]


def split_batch(structures: Sequence[Structure], energies, forces, stresses) -> list[PotentialResult]:
    """Per-structure results from batched tensors (energies (n,), forces (atoms, 3), stresses (n, 3, 3) eV/Å^3)."""
    energies = energies.detach().reshape(-1).double().cpu().numpy()
    forces = forces.detach().double().cpu().numpy()
    stresses = stresses.detach().double().cpu().numpy().reshape(-1, 3, 3)
    counts = [len(s) for s in structures]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return [
        PotentialResult(float(energies[i]), forces[offsets[i] : offsets[i + 1]], stresses[i], counts[i])
        for i in range(len(structures))
    ]
