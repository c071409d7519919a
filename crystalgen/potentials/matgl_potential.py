"""matgl (PyG backend) potentials loaded from a local model folder, evaluated as one batched graph."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from crystalgen.potentials.base import EV_PER_A3_TO_GPA, Potential, PotentialResult

MODEL_FILES = ("model.json", "model.pt", "state.pt")


def is_matgl_model_dir(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in MODEL_FILES)


class MatglPotential(Potential):
    """A matgl ``Potential`` (TensorNet, M3GNet, ...) read from a folder with model.json/model.pt/state.pt.

    All structures of one :meth:`predict` call are merged into one PyG ``Batch`` and go through the
    model in a single forward/backward pass (forces and stresses by autograd).
    """

    def __init__(self, model_dir: str | os.PathLike, name: str | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("MATGL_BACKEND", "PYG")
        import matgl
        from matgl.ext.pymatgen import Structure2Graph

        model_dir = Path(model_dir)
        if not is_matgl_model_dir(model_dir):
            raise FileNotFoundError(f"{model_dir} is not a matgl model folder (needs {', '.join(MODEL_FILES)})")
        self.model_dir = model_dir
        self.name = name or model_dir.name
        self.version = f"{self.name} (matgl {matgl.__version__}, backend {matgl.config.BACKEND})"
        self.model = matgl.load_model(model_dir)  # a local folder: matgl never downloads here
        self.model.eval()
        self.elements = frozenset(self.model.model.element_types)
        self._converter = Structure2Graph(self.model.model.element_types, float(self.model.model.cutoff))

    def predict(self, structures: Sequence[Structure]) -> list[PotentialResult]:
        import torch
        from torch_geometric.data import Batch

        if not structures:
            return []
        for structure in structures:
            if missing := self.unsupported_elements(structure):
                raise ValueError(f"{self.name} has no parameters for element(s) {sorted(missing)}")
        graphs, lattices = [], []
        for structure in structures:
            graph, lattice, _ = self._converter.get_graph(structure)
            graphs.append(graph)
            lattices.append(torch.as_tensor(lattice).reshape(3, 3))
        batch = Batch.from_data_list(graphs)
        lat = torch.stack(lattices)
        state = torch.zeros((len(structures), 2), dtype=lat.dtype)
        energies, forces, stresses, _ = self.model(batch, lat, state)
        energies = energies.detach().reshape(-1).double().numpy()
        forces = forces.detach().double().numpy()
        stresses = stresses.detach().double().numpy().reshape(-1, 3, 3) / EV_PER_A3_TO_GPA
        counts = [len(s) for s in structures]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return [
            PotentialResult(float(energies[i]), forces[offsets[i] : offsets[i + 1]], stresses[i], counts[i])
            for i in range(len(structures))
        ]
