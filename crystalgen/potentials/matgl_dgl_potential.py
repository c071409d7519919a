"""matgl DGL-backend potentials (the classic M3GNet weights), evaluated as one batched DGL graph.

Only a process started with ``MATGL_BACKEND=DGL`` on a stack where dgl imports (dgl 2.1.0 needs
torch <= 2.2.1) gets here; shared/data/README.md records that this is the combination on which the
M3GNet weight files reproduce matgl's own reference energies.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from crystalgen.potentials.base import EV_PER_A3_TO_GPA, PotentialResult
from crystalgen.potentials.matgl_potential import DGL_STACK, MatglFolderPotential, split_batch


def import_dgl():
    """``dgl``, or a ``ValueError`` that says which stack it needs (it fails to import on newer torch)."""
    try:
        import dgl
    except Exception as exc:  # dgl raises FileNotFoundError/OSError for a torch it has no graphbolt for
        import torch

        raise ValueError(
            f"MATGL_BACKEND=DGL but dgl cannot be imported with torch {torch.__version__} ({exc}); "
            f"M3GNet needs {DGL_STACK}"
        ) from exc
    return dgl


class MatglDglPotential(MatglFolderPotential):
    """A matgl DGL ``Potential`` (M3GNet, or TensorNet's DGL port) from a local model folder.

    All structures of one :meth:`predict` call are merged with ``dgl.batch`` and evaluated by matgl's
    own ``Potential.forward`` (one forward + autograd pass; M3GNet builds its three-body line graph
    on the batched graph).
    """

    def __init__(self, model_dir: str | os.PathLike, name: str | None = None, device: str | None = None):
        import_dgl()
        super().__init__(model_dir, name, device)

    def predict(self, structures: Sequence[Structure]) -> list[PotentialResult]:
        import dgl
        import torch

        if not structures:
            return []
        self.require_supported(structures)
        graphs, lattices, states = [], [], []
        for structure in structures:
            graph, lattice, state = self._converter.get_graph(structure)
            graphs.append(graph)
            lattices.append(torch.as_tensor(lattice).reshape(3, 3))
            states.append(np.asarray(state, dtype=np.float32).reshape(-1))
        lat = torch.stack(lattices).to(self.device)
        state_attr = torch.as_tensor(np.stack(states), dtype=lat.dtype, device=self.device)
        energies, forces, stresses, _ = self.model(dgl.batch(graphs).to(self.device), lat, state_attr)
        # matgl reports (1/V) dE/dstrain in GPa, which is the ASE sign convention
        return split_batch(structures, energies, forces, stresses.reshape(-1, 3, 3) / EV_PER_A3_TO_GPA)

