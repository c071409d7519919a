"""SevenNet (``pip install crystalgen[sevenn]``): the wheel's own checkpoints or a local file, batched.

The sevenn 0.13.0 wheel ships SevenNet-0 (``7net-0``, ``7net-0_22may2024``), ``7net-mf-0`` and
``7net-l3i5``; its other names (``7net-mf-ompa``, ``7net-omat``, ``7net-omni``...) are downloaded by
sevenn on first use, which :func:`sevenn_checkpoint` refuses, naming the file to provide instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from pymatgen.core import Element, Structure

from crystalgen.potentials.base import Potential, PotentialResult, resolve_device
from crystalgen.potentials.offline import DownloadRequired, require_module


@contextmanager
def _no_downloads():
    """sevenn's own name lookup, with its download hook replaced by a refusal."""
    import sevenn.util

    def refuse(path: str, url: str) -> str:
        raise DownloadRequired(path, f"sevenn would download it from {url}")

    original = sevenn.util.download_checkpoint
    sevenn.util.download_checkpoint = refuse
    try:
        yield
    finally:
        sevenn.util.download_checkpoint = original


def sevenn_checkpoint(model: str) -> Path:
    """The checkpoint file of a sevenn model name or path; ``DownloadRequired`` when it is not on disk."""
    require_module("sevenn", "sevenn", "crystalgen[sevenn]")
    path = Path(model).expanduser()
    if path.suffix in (".pth", ".pt") or os.sep in model:
        if not path.is_file():
            raise DownloadRequired(str(path), "no such checkpoint file")
        return path
    import sevenn.util

    with _no_downloads():
        try:
            return Path(sevenn.util.pretrained_name_to_path(model))
        except DownloadRequired:
            raise
        except ValueError as exc:
            raise ValueError(
                f"unknown SevenNet model {model!r}: give a checkpoint file or one of "
                f"{', '.join(sevenn.util.get_available_pretrained_models())}"
            ) from exc
        except FileNotFoundError as exc:
            raise DownloadRequired(str(exc), "not in the sevenn wheel") from exc


class SevenNetPotential(Potential):
    """A SevenNet checkpoint; all structures of one :meth:`predict` call go through one collated graph."""

    def __init__(self, model: str = "7net-0", modal: str | None = None, device: str | None = None):
        checkpoint = sevenn_checkpoint(model)  # first: names the package or the file when either is missing
        import sevenn
        import torch
        from sevenn.util import load_checkpoint

        self.device = resolve_device(device)
        self.checkpoint = checkpoint
        net = load_checkpoint(str(checkpoint)).build_model()
        if net.modal_map and modal not in net.modal_map:
            raise ValueError(f"SevenNet model {model!r} needs a modal (fidelity): sevenn:{model}:<modal> "
                             f"with <modal> one of {', '.join(net.modal_map)}")
        net.set_is_batch_data(True)
        net.eval_type_map = torch.tensor(True)
        self.model = net.to(self.device).eval()
        self.modal = modal
        self.cutoff = float(net.cutoff)
        # the wheel's folder names the weights whatever alias was used (7net-0 = SevenNet_0__11Jul2024)
        shipped = checkpoint.parent.parent.name == "pretrained_potentials"
        self.name = checkpoint.parent.name if shipped else checkpoint.stem
        if modal:
            self.name += f"-{modal}"
        self.version = f"{self.name} (sevenn {sevenn.__version__}, {checkpoint.name})"
        self.elements = frozenset(Element.from_Z(int(z)).symbol for z in net.type_map)

    def predict(self, structures: Sequence[Structure]) -> list[PotentialResult]:
        from pymatgen.io.ase import AseAtomsAdaptor
        from sevenn import _keys as KEY
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.loader.dataloader import Collater

        from crystalgen.potentials.matgl_potential import split_batch

        if not structures:
            return []
        self.require_supported(structures)
        graphs = []
        for structure in structures:
            graph = AtomGraphData.from_numpy_dict(
                unlabeled_atoms_to_graph(AseAtomsAdaptor.get_atoms(structure), self.cutoff, with_shift=False))
            if self.modal:
                graph[KEY.DATA_MODALITY] = self.modal
            graphs.append(graph)
        batch = Collater([], follow_batch=None, exclude_keys=None)(graphs).to(self.device)
        output = self.model(batch)
        # sevenn's stress: Voigt (xx, yy, zz, xy, yz, zx), eV/Å^3, opposite sign to ASE
        voigt = -output[KEY.PRED_STRESS].detach().reshape(-1, 6)
        xx, yy, zz, xy, yz, zx = voigt.unbind(-1)
        import torch

        stress = torch.stack([torch.stack([xx, xy, zx], -1), torch.stack([xy, yy, yz], -1),
                              torch.stack([zx, yz, zz], -1)], -2)
        return split_batch(structures, output[KEY.PRED_TOTAL_ENERGY], output[KEY.PRED_FORCE], stress)

    def torchsim_model(self):
        """The same network as TorchSim's ``SevenNetModel`` (for ``prerelax.relaxer: torchsim``)."""
        from sevenn.torchsim import SevenNetModel

        net = self.model
        net.set_is_batch_data(True)
        return SevenNetModel(net, modal=self.modal, device=self.device)
