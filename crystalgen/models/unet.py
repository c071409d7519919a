"""Conditional 1D UNet over the 64 rows of the crystal tensor (channels = x, y, z).

The layout follows the improved-DDPM UNet (residual blocks with an additive condition embedding,
self-attention at chosen resolutions, skip connections between the down and up paths), in one
dimension. The paper configuration (model_channels 128, channel_mult (1, 2, 4, 8), 7 residual
blocks per level, attention at every level) has about 3e8 parameters; :data:`DEMO` is small
enough to train on a laptop CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from crystalgen.layout import COORD_CHANNELS, ELEMENT_CHANNELS, N_ROWS
from crystalgen.models.conditioning import ConditionEncoder, TimeEncoder


class UNetConfig(BaseModel):
    """Size of the network. The defaults are the paper's (about 305 M parameters)."""

    model_config = ConfigDict(extra="forbid")

    model_channels: int = Field(128, ge=8)
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)
    num_res_blocks: int = Field(7, ge=1)
    attention_levels: tuple[int, ...] = Field((0, 1, 2, 3), description="levels (0 = full length 64) with self-attention")
    num_head_channels: int = Field(32, ge=4)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    row_element_channels: int = Field(
        16, ge=0, description="per-row projection of the element features fed as input channels (0: off)"
    )
    condition_hidden: int = Field(64, ge=8, description="width of the element / space-group CNN encoders")
    in_channels: int = Field(COORD_CHANNELS, description="3, or 6 when the initial structure x0 is an input (Palette)")

    @model_validator(mode="after")
    def _check(self) -> "UNetConfig":
        if N_ROWS % 2 ** (len(self.channel_mult) - 1):
            raise ValueError(f"channel_mult has {len(self.channel_mult)} levels: {N_ROWS} rows cannot be halved that often")
        bad = [lvl for lvl in self.attention_levels if not 0 <= lvl < len(self.channel_mult)]
        if bad:
            raise ValueError(f"attention_levels {bad} outside 0..{len(self.channel_mult) - 1}")
        if self.in_channels not in (COORD_CHANNELS, 2 * COORD_CHANNELS):
            raise ValueError(f"in_channels must be {COORD_CHANNELS} or {2 * COORD_CHANNELS}, got {self.in_channels}")
        return self


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class ResBlock(nn.Module):
    """Two convolutions with the embedding applied as a scale/shift between them."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(_norm(in_ch), nn.SiLU(), nn.Conv1d(in_ch, out_ch, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_ch))
        self.out_norm = _norm(out_ch)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), nn.Conv1d(out_ch, out_ch, 3, padding=1))
        nn.init.zeros_(self.out_layers[-1].weight)
        nn.init.zeros_(self.out_layers[-1].bias)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv1d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb(emb)[..., None].chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


class Attention(nn.Module):
    """Multi-head self-attention across the rows (atoms and lattice vectors see each other)."""

    def __init__(self, channels: int, head_channels: int):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, n).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # (b, heads, n, c/heads)
        return x + self.out(h.transpose(-1, -2).reshape(b, c, n))


class _Level(nn.Module):
    """ResBlock (+ attention) pair, called with the embedding."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, cfg: UNetConfig, attention: bool):
        super().__init__()
        self.res = ResBlock(in_ch, out_ch, emb_dim, cfg.dropout)
        self.attn = Attention(out_ch, cfg.num_head_channels) if attention else nn.Identity()

    def forward(self, x, emb):
        return self.attn(self.res(x, emb))


class UNet1D(nn.Module):
    """eps / velocity / structure predictor: (B, 64, 3) noisy tensor + conditions -> (B, 64, 3)."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        cfg = self.config = config or UNetConfig()
        ch = cfg.model_channels
        emb_dim = 4 * ch
        self.time = TimeEncoder(ch, emb_dim)
        self.conditions = ConditionEncoder(emb_dim, cfg.condition_hidden)
        self.row_elements = nn.Conv1d(ELEMENT_CHANNELS, cfg.row_element_channels, 1) if cfg.row_element_channels else None

        self.conv_in = nn.Conv1d(cfg.in_channels + cfg.row_element_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [ch]
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(_Level(ch, mult * cfg.model_channels, emb_dim, cfg, level in cfg.attention_levels))
                ch = mult * cfg.model_channels
                skips.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.Conv1d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList([_Level(ch, ch, emb_dim, cfg, True), _Level(ch, ch, emb_dim, cfg, False)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                self.up.append(
                    _Level(ch + skips.pop(), mult * cfg.model_channels, emb_dim, cfg, level in cfg.attention_levels)
                )
                ch = mult * cfg.model_channels
                if level and i == cfg.num_res_blocks:
                    self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv1d(ch, COORD_CHANNELS, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def encode_conditions(self, elements, spacegroup, energy, nsites) -> dict:
        """The condition embedding and per-row element channels (independent of x and t)."""
        rows = self.row_elements(elements.transpose(1, 2)) if self.row_elements is not None else None
        return {"embedding": self.conditions(elements, spacegroup, energy, nsites), "rows": rows}

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        elements: torch.Tensor,
        spacegroup: torch.Tensor,
        energy: torch.Tensor,
        nsites: torch.Tensor,
        x_cond: torch.Tensor | None = None,
        cached: dict | None = None,
    ) -> torch.Tensor:
        """x, x_cond: (B, 64, 3); t: (B,) in [0, 1000]; elements (B, 64, 125); spacegroup (B, 192, 4, 4).

        ``cached``: :meth:`encode_conditions` of the same conditions, which then are not re-encoded
        (samplers call the network many times with fixed conditions).
        """
        cached = cached or self.encode_conditions(elements, spacegroup, energy, nsites)
        emb = self.time(t) + cached["embedding"]
        inputs = [x]
        if self.config.in_channels == 2 * COORD_CHANNELS:
            if x_cond is None:
                raise ValueError("this network is conditioned on an initial structure: pass x_cond")
            inputs.append(x_cond)
        h = torch.cat(inputs, dim=-1).transpose(1, 2)
        if cached["rows"] is not None:
            h = torch.cat([h, cached["rows"]], dim=1)
        h = self.conv_in(h)
        hs = [h]
        for block in self.down:
            h = block(h, emb) if isinstance(block, _Level) else block(h)
            hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for block in self.up:
            if isinstance(block, _Level):
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = block(h)
        return self.out(h).transpose(1, 2)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
