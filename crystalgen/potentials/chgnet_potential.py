"""CHGNet (weights bundled in the chgnet wheel), evaluated with its own batched graph API."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from crystalgen.potentials.base import EV_PER_A3_TO_GPA, Potential, PotentialResult, resolve_device


class CHGNetPotential(Potential):
    """CHGNet ``model_version`` (``"0.3.0"`` or ``"0.2.0"``) from the chgnet wheel; never downloads."""

    def __init__(self, model_version: str = "0.3.0", device: str | None = None):
        import chgnet
        from chgnet.model import CHGNet

        self.device = resolve_device(device)
        self.model = CHGNet.load(model_name=model_version, use_device=self.device, verbose=False)
        self.model.eval()
        self.name = f"CHGNet-{model_version}"
        self.version = f"{self.name} (chgnet {chgnet.__version__})"
        # CHGNet embeds atomic numbers 1..94
        from pymatgen.core import Element

        self.elements = frozenset(Element.from_Z(z).symbol for z in range(1, 95))

    def predict(self, structures: Sequence[Structure]) -> list[PotentialResult]:
        if not structures:
            return []
        preds = self.model.predict_structure(list(structures), task="efs", batch_size=len(structures))
        if isinstance(preds, dict):
            preds = [preds]
        # CHGNet reports energy per atom in eV and stress in GPa with the ASE sign convention.
        return [
            PotentialResult(
                float(p["e"]) * len(s),
                np.asarray(p["f"], dtype=float),
                np.asarray(p["s"], dtype=float).reshape(3, 3) / EV_PER_A3_TO_GPA,
                len(s),
            )
            for p, s in zip(preds, structures, strict=True)
        ]
