"""Conditional flow matching: x_t = t x1 + (1 - t) x0, the network regresses the velocity x1 - x0.

Generation starts from N(0, 1) ('cfm-n') or U(0, 1) ('cfm-u') noise in the normalised space;
modification ('mod-cfm') starts from the initial structure itself, so the flow transports one
polymorph to a lower-energy one. Sampling integrates the learned ODE from t = 0 to 1 with Euler
steps or with the explicit midpoint rule (second order: fewer steps for the same accuracy).
"""

from __future__ import annotations

import torch

from crystalgen.layout import COORD_CHANNELS, N_ROWS
from crystalgen.methods.base import Generator, Method, row_mask, standard_normal, standard_uniform

TIME_SCALE = 1000.0  # flow time in [0, 1] -> the network's timestep scale


class FlowMatching(Method):
    family = "cfm"
    default_loss = "l2"

    def __init__(self, network, normalizer, config, source: str = "normal"):
        super().__init__(network, normalizer, config)
        if source not in ("normal", "uniform", "structure"):
            raise ValueError(f"CFM source must be normal, uniform or structure, got {source!r}")
        self.source_kind = source

    def source(self, batch: dict, mask: torch.Tensor, generator: Generator) -> torch.Tensor:
        if self.source_kind == "structure":
            return self.initial(batch)
        draw = standard_normal if self.source_kind == "normal" else standard_uniform
        return draw(mask.shape[:1] + (N_ROWS, COORD_CHANNELS), generator, mask.device) * mask

    def velocity(self, x, t, cond):
        return self.network(x, t * TIME_SCALE, **cond).float()

    def loss(self, batch: dict) -> torch.Tensor:
        x1, mask = self.target(batch)
        x0 = self.source(batch, mask, None)
        t = torch.rand(x1.shape[0], device=x1.device)
        x_t = t.view(-1, 1, 1) * x1 + (1 - t.view(-1, 1, 1)) * x0
        return self.reduce_loss(self.velocity(x_t, t, self.conditions(batch)), x1 - x0, mask, batch["nsites"])

    @torch.no_grad()
    def sample(self, batch: dict, steps: int | None = None, generator: Generator = None) -> torch.Tensor:
        cond = self.sampling_conditions(batch)
        mask = row_mask(batch["nsites"])
        x = self.source(batch, mask, generator)
        steps = steps or self.config.inference_steps
        h = 1.0 / steps
        for i in range(steps):
            t = torch.full((x.shape[0],), i * h, device=x.device)
            v = self.velocity(x, t, cond)
            if self.config.solver == "midpoint":
                v = self.velocity(x + 0.5 * h * v * mask, t + 0.5 * h, cond)
            x = (x + h * v) * mask
        return self.finish(x, batch)


class ModificationFlow(FlowMatching):
    """Modification by flow matching: the source distribution is the initial structure."""

    task = "modification"

    def __init__(self, network, normalizer, config, source: str = "structure"):
        super().__init__(network, normalizer, config, source)
