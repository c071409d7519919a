"""The one interface every machine-learned interatomic potential implements.

Units are fixed so that relaxers never convert: energies in eV, forces in eV/Å and stresses in
eV/Å^3 with the ASE sign convention (``stress = (1/V) dE/dstrain``: positive = the cell wants to
shrink, i.e. tensile). Multiply a stress by :data:`EV_PER_A3_TO_GPA` for GPa.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from crystalgen.settings import get_settings

EV_PER_A3_TO_GPA = 160.21766208


def resolve_device(device: str | None = None) -> str:
    """The torch device a potential runs on: ``device``, else the ``potential_device`` setting (auto).

    Raises ``ValueError`` naming the value when a GPU is asked for and none is visible.
    """
    import torch

    requested = (device or get_settings().potential_device or "auto").strip().lower()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(requested).type
    except RuntimeError as exc:
        raise ValueError(f"potential device {requested!r} is not a torch device (auto, cpu, cuda, cuda:N)") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"potential device {requested!r} asked for, but this process sees no CUDA GPU")
    return requested


@dataclass(frozen=True)
class PotentialResult:
    """Energy, forces and stress of one structure."""

    energy: float  # total energy, eV
    forces: np.ndarray  # (n_sites, 3), eV/Å
    stress: np.ndarray  # (3, 3), eV/Å^3, ASE sign convention
    n_sites: int

    @property
    def energy_per_atom(self) -> float:
        return self.energy / self.n_sites

    @property
    def is_finite(self) -> bool:
        return bool(np.isfinite(self.energy) and np.isfinite(self.forces).all() and np.isfinite(self.stress).all())


class Potential(abc.ABC):
    """A potential that evaluates many structures in one batched forward pass."""

    #: model name, e.g. ``"TensorNet-MatPES-PBE-v2025.1-PES"``; keys the sanity-check reference table
    name: str
    #: model name plus the library version that ran it, e.g. ``"... (matgl 2.1.2)"``
    version: str
    #: chemical elements the model was trained on
    elements: frozenset[str]
    #: torch device the model runs on (results always come back as NumPy arrays)
    device: str = "cpu"

    @abc.abstractmethod
    def predict(self, structures: Sequence[Structure]) -> list[PotentialResult]:
        """Energies, forces and stresses of all ``structures`` from ONE batched forward pass."""

    def torchsim_model(self):
        """This model as a TorchSim ``ModelInterface`` (``prerelax.relaxer: torchsim``); ``None``: TorchSim has none."""
        return None

    def unsupported_elements(self, structure: Structure) -> set[str]:
        return {el.symbol for el in structure.composition.elements} - self.elements

    def require_supported(self, structures: Sequence[Structure]) -> None:
        """Raise ``ValueError`` naming the first element this model has no parameters for."""
        for structure in structures:
            if missing := self.unsupported_elements(structure):
                raise ValueError(f"{self.name} has no parameters for element(s) {sorted(missing)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.version!r})"
