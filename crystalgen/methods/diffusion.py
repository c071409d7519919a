"""Denoising diffusion (eps-prediction): DDPM and DDIM sampling, and Palette modification.

The noise schedule is written out here (no diffusers): ``squaredcos_cap_v2`` is the cosine
schedule of Nichol & Dhariwal (2021), betas capped at 0.999. Sampling with fewer steps than the
training schedule uses "trailing" timestep spacing (the first step starts at t = T - 1, pure
noise) and re-derives the per-step betas from the cumulative alphas, as DDPM/DDIM schedulers do.
"""

from __future__ import annotations

import math

import torch

from crystalgen.layout import COORD_CHANNELS, LATTICE_ROWS, N_ROWS
from crystalgen.methods.base import Generator, Method, row_mask, standard_normal

LATTICE_CLIP = 5.0


def cosine_alphas_cumprod(timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / timesteps) / alpha_bar(i / timesteps), max_beta) for i in range(timesteps)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0)


def linear_alphas_cumprod(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64), 0)


def inference_timesteps(train_timesteps: int, steps: int) -> list[int]:
    """Descending timesteps, trailing spacing: starts at T-1, ends near 0."""
    if not 1 <= steps <= train_timesteps:
        raise ValueError(f"steps must be in 1..{train_timesteps}, got {steps}")
    return [round(train_timesteps - i * train_timesteps / steps) - 1 for i in range(steps)]


class Diffusion(Method):
    """Generation from N(0, I) with an eps-predicting UNet; sampler 'ddpm' (ancestral) or 'ddim' (eta = 0)."""

    family = "diffusion"
    default_loss = "l2"

    def __init__(self, network, normalizer, config, sampler: str = "ddpm"):
        super().__init__(network, normalizer, config)
        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"diffusion sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        self.sampler = sampler
        make = cosine_alphas_cumprod if config.beta_schedule == "squaredcos_cap_v2" else linear_alphas_cumprod
        self.register_buffer("alphas_cumprod", make(config.train_timesteps).float(), persistent=False)

    @staticmethod
    def clip(x0: torch.Tensor) -> torch.Tensor:
        """Keep the predicted clean sample in the data range (coordinates [-1, 1], lattice +-5 std).

        Near t = T the cosine schedule has alpha_bar ~ 1e-9, so an unclipped x0 estimate from
        an imperfect eps is off by orders of magnitude (the 'clip_sample' of DDPM samplers).
        """
        out = x0.clone()
        out[:, :LATTICE_ROWS.start] = x0[:, :LATTICE_ROWS.start].clamp(-1.0, 1.0)
        out[:, LATTICE_ROWS] = x0[:, LATTICE_ROWS].clamp(-LATTICE_CLIP, LATTICE_CLIP)
        return out

    def _x_cond(self, batch):  # Palette overrides
        return None

    def loss(self, batch: dict) -> torch.Tensor:
        x1, mask = self.target(batch)
        b = x1.shape[0]
        t = torch.randint(0, self.config.train_timesteps, (b,), device=x1.device)
        noise = torch.randn_like(x1) * mask
        ab = self.alphas_cumprod[t].view(b, 1, 1)
        x_t = ab.sqrt() * x1 + (1 - ab).sqrt() * noise
        eps = self.network(x_t, t.float(), x_cond=self._x_cond(batch), **self.conditions(batch))
        return self.reduce_loss(eps, noise, mask, batch["nsites"])

    @torch.no_grad()
    def sample(self, batch: dict, steps: int | None = None, generator: Generator = None) -> torch.Tensor:
        cond = self.sampling_conditions(batch)
        x_cond = self._x_cond(batch)
        mask = row_mask(batch["nsites"])
        b = mask.shape[0]
        device = mask.device
        x = standard_normal((b, N_ROWS, COORD_CHANNELS), generator, device) * mask
        timesteps = inference_timesteps(self.config.train_timesteps, steps or self.config.inference_steps)
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            ab_t = self.alphas_cumprod[t]
            ab_prev = self.alphas_cumprod[t_prev] if t_prev >= 0 else torch.ones((), device=device)
            eps = self.network(x, torch.full((b,), float(t), device=device), x_cond=x_cond, **cond).float()
            x0 = self.clip((x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt())
            eps = (x - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()
            if self.sampler == "ddim":
                x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
            else:
                beta = 1 - ab_t / ab_prev
                mean = (ab_prev.sqrt() * beta / (1 - ab_t)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab_t)) * x
                if t_prev >= 0:
                    var = (1 - ab_prev) / (1 - ab_t) * beta
                    mean = mean + var.clamp_min(1e-20).sqrt() * standard_normal((b, N_ROWS, COORD_CHANNELS), generator, device)
                x = mean
            x = x * mask
        return self.finish(x, batch)


class Palette(Diffusion):
    """Modification by diffusion (Palette): the initial structure x0 is concatenated to the input."""

    task = "modification"
    family = "palette"
    network_in_channels = 2 * COORD_CHANNELS

    def _x_cond(self, batch):
        return self.initial(batch)
