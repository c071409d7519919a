"""Encoders that turn the crystal conditions into one embedding vector per sample.

Each condition gets its own small encoder (time: sinusoidal + MLP, elements: 1D CNN over the
64 rows, space group: 2D CNN over the 192 stacked 4x4 affine matrices, scalars: MLPs). Their
outputs are concatenated and projected, and the result is added to the time embedding, so every
residual block of the UNet sees every condition.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from crystalgen.layout import AFFINE_DIM, ELEMENT_CHANNELS, N_ROWS, N_SYMOPS


def sinusoidal_embedding(values: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style sin/cos features of a (B,) tensor of (possibly fractional) values."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    args = values.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


def _mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))


class TimeEncoder(nn.Module):
    """Sinusoidal features of the diffusion step / flow time, followed by an MLP."""

    def __init__(self, base_dim: int, emb_dim: int):
        super().__init__()
        self.base_dim = base_dim
        self.mlp = nn.Sequential(nn.Linear(base_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.base_dim))


class ElementEncoder(nn.Module):
    """1D CNN over the 64x125 element table; flattening keeps which element sits in which row."""

    def __init__(self, hidden: int, out_dim: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(ELEMENT_CHANNELS, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv1d(hidden, hidden, 3, padding=1, stride=2),
            nn.SiLU(),
            nn.Conv1d(hidden, hidden // 2, 3, padding=1, stride=2),
            nn.SiLU(),
        )
        self.proj = nn.Linear((hidden // 2) * (N_ROWS // 4), out_dim)

    def forward(self, elements: torch.Tensor) -> torch.Tensor:  # (B, 64, 125)
        return self.proj(self.conv(elements.transpose(1, 2)).flatten(1))


class SpacegroupEncoder(nn.Module):
    """2D CNN over the space group's symmetry operations (192 channels of 4x4 affine matrices)."""

    def __init__(self, hidden: int, out_dim: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(N_SYMOPS, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.SiLU(),
        )
        self.proj = nn.Linear(hidden * AFFINE_DIM * AFFINE_DIM, out_dim)

    def forward(self, spacegroup: torch.Tensor) -> torch.Tensor:  # (B, 192, 4, 4)
        return self.proj(self.conv(spacegroup).flatten(1))


class ScalarEncoder(nn.Module):
    """Sinusoidal features + MLP for one normalised scalar (formation energy, energy difference)."""

    def __init__(self, out_dim: int, base_dim: int = 32):
        super().__init__()
        self.base_dim = base_dim
        self.mlp = _mlp(base_dim + 1, out_dim)

    def forward(self, value: torch.Tensor) -> torch.Tensor:  # (B,)
        value = value.float()
        feats = torch.cat([value[:, None], sinusoidal_embedding(value * 100.0, self.base_dim)], dim=-1)
        return self.mlp(feats)


class ConditionEncoder(nn.Module):
    """All conditions -> one vector of size ``emb_dim`` (added to the time embedding)."""

    def __init__(self, emb_dim: int, hidden: int):
        super().__init__()
        self.elements = ElementEncoder(hidden, emb_dim)
        self.spacegroup = SpacegroupEncoder(hidden, emb_dim)
        self.energy = ScalarEncoder(emb_dim)
        self.nsites = nn.Embedding(N_ROWS + 1, emb_dim)
        self.proj = nn.Sequential(nn.SiLU(), nn.Linear(4 * emb_dim, emb_dim))

    def forward(self, elements, spacegroup, energy, nsites) -> torch.Tensor:
        parts = [
            self.elements(elements),
            self.spacegroup(spacegroup),
            self.energy(energy),
            self.nsites(nsites.long().clamp(0, N_ROWS)),
        ]
        return self.proj(torch.cat(parts, dim=-1))
