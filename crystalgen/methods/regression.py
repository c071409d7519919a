"""Regression baselines: one network pass from the conditions (or the initial structure) to the target."""

from __future__ import annotations

import torch

from crystalgen.layout import COORD_CHANNELS, N_ROWS
from crystalgen.methods.base import Generator, Method


class Regression(Method):
    """Generation: the input is all zeros at t = 0, so the output depends on the conditions only."""

    family = "regression"
    default_loss = "l1"

    def predict(self, batch: dict) -> torch.Tensor:
        cond = self.conditions(batch)
        b = cond["nsites"].shape[0]
        x_in = self.initial(batch) if self.task == "modification" else torch.zeros(b, N_ROWS, COORD_CHANNELS, device=cond["nsites"].device)
        return self.network(x_in, torch.zeros(b, device=x_in.device), **cond).float()

    def loss(self, batch: dict) -> torch.Tensor:
        x1, mask = self.target(batch)
        return self.reduce_loss(self.predict(batch), x1, mask, batch["nsites"])

    @torch.no_grad()
    def sample(self, batch: dict, steps: int | None = None, generator: Generator = None) -> torch.Tensor:
        return self.finish(self.predict(batch), batch)


class ModificationRegression(Regression):
    """Modification: initial structure in, lower-energy structure out."""

    task = "modification"
    family = "mod-regression"
