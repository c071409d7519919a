"""What every training/sampling method shares: the interface, normalisation and padding masks.

A method owns a network and knows (1) how to turn a batch of encoded crystals into a training
loss and (2) how to turn a batch of conditions into 64x3 crystal tensors. Batches are dicts of
tensors as produced by :func:`crystalgen.representation.condition_batch` (``element_features``,
``spacegroup``, ``formation_energy``, ``nsites``) plus ``coords_lattice``; modification
batches add ``init_coords_lattice``, ``init_nsites`` and ``energy_diff``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from crystalgen import losses
from crystalgen.layout import COORD_CHANNELS, LATTICE_ROWS, N_ROWS
from crystalgen.models.unet import UNet1D

MIN_LATTICE_STD = 0.1  # Å: below this an entry is treated as constant, not blown up

Generator = torch.Generator | Sequence[torch.Generator] | None


class MethodConfig(BaseModel):
    """Which method, its noise schedule and its default sampler."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("cfm-n", description="one of crystalgen.methods.METHODS")
    train_timesteps: int = Field(1000, ge=2, description="diffusion: number of training noise levels")
    beta_schedule: Literal["squaredcos_cap_v2", "linear"] = "squaredcos_cap_v2"
    inference_steps: int = Field(100, ge=1, description="default number of sampling steps")
    solver: Literal["euler", "midpoint"] = Field("euler", description="CFM ODE solver (midpoint: 2 evaluations/step)")
    loss: Literal["l1", "l2", "pbc"] | None = Field(
        None, description="training loss on normalised tensors; None: l2 for diffusion/CFM, l1 for regression"
    )


def row_mask(nsites: torch.Tensor) -> torch.Tensor:
    """(B, 64, 1) float mask: 1 on atom rows (< nsites) and the 3 lattice rows, 0 on padding."""
    rows = torch.arange(N_ROWS, device=nsites.device)
    atoms = rows[None, :] < nsites[:, None].to(rows.device)
    lattice = (rows >= LATTICE_ROWS.start)[None, :]
    return (atoms | lattice).float()[..., None]


class Normalizer(nn.Module):
    """Maps physical crystal tensors to roughly unit scale and back, with dataset statistics.

    Coordinates in [0, 1) map to [-1, 1); every lattice entry is standardised with its dataset
    mean and standard deviation (entries that never vary, such as a_y in the a-along-x convention,
    get the floor ``MIN_LATTICE_STD``); the scalar condition (formation energy or energy difference) is standardised.
    The statistics are buffers, so they travel with the method's state dict and the checkpoint.
    """

    def __init__(self, lattice_mean=None, lattice_std=None, scalar_mean=0.0, scalar_std=1.0):
        super().__init__()
        self.register_buffer("lattice_mean", torch.as_tensor(lattice_mean if lattice_mean is not None else torch.zeros(3, 3), dtype=torch.float32))
        self.register_buffer("lattice_std", torch.as_tensor(lattice_std if lattice_std is not None else torch.ones(3, 3), dtype=torch.float32))
        self.register_buffer("scalar_mean", torch.tensor(float(scalar_mean)))
        self.register_buffer("scalar_std", torch.tensor(float(scalar_std)))

    @classmethod
    def fit(cls, coords_lattice: torch.Tensor, scalar: torch.Tensor) -> "Normalizer":
        lattice = coords_lattice[:, LATTICE_ROWS].double()
        std = lattice.std(0, unbiased=False)
        std = std.clamp_min(MIN_LATTICE_STD)
        sstd = float(scalar.double().std(unbiased=False)) if scalar.numel() > 1 else 1.0
        return cls(lattice.mean(0).float(), std.float(), float(scalar.double().mean()), sstd if sstd > 1e-6 else 1.0)

    def to_dict(self) -> dict:
        return {
            "lattice_mean": self.lattice_mean.tolist(),
            "lattice_std": self.lattice_std.tolist(),
            "scalar_mean": float(self.scalar_mean),
            "scalar_std": float(self.scalar_std),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Normalizer":
        return cls(data["lattice_mean"], data["lattice_std"], data["scalar_mean"], data["scalar_std"])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        out[:, :LATTICE_ROWS.start] = x[:, :LATTICE_ROWS.start] * 2.0 - 1.0
        out[:, LATTICE_ROWS] = (x[:, LATTICE_ROWS] - self.lattice_mean) / self.lattice_std
        return out

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = z.clone()
        out[:, :LATTICE_ROWS.start] = torch.remainder((z[:, :LATTICE_ROWS.start] + 1.0) / 2.0, 1.0)
        out[:, LATTICE_ROWS] = z[:, LATTICE_ROWS] * self.lattice_std + self.lattice_mean
        return out

    def encode_scalar(self, value: torch.Tensor) -> torch.Tensor:
        return (value.float() - self.scalar_mean) / self.scalar_std


def standard_normal(shape: Sequence[int], generator: Generator, device) -> torch.Tensor:
    """N(0, 1) noise drawn on the CPU from one generator per sample (or one for the batch).

    One generator per sample makes every sample independent of how conditions are batched or
    sharded across processes; drawing on the CPU makes it independent of the device.
    """
    return _draw(torch.randn, shape, generator, device)


def standard_uniform(shape: Sequence[int], generator: Generator, device) -> torch.Tensor:
    return _draw(torch.rand, shape, generator, device)


def _draw(fn, shape, generator, device) -> torch.Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        return fn(tuple(shape), generator=generator).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
    return torch.stack([fn(tuple(shape[1:]), generator=g) for g in generator]).to(device)


class Method(nn.Module):
    """A network plus the recipe that trains it and samples from it.

    Subclasses implement :meth:`loss` and :meth:`sample`; ``forward`` is the loss so that a whole
    method can be wrapped in DistributedDataParallel.
    """

    name: str = ""
    task: Literal["generation", "modification"] = "generation"
    family: str = ""
    default_loss: Literal["l1", "l2", "pbc"] = "l2"
    network_in_channels: int = COORD_CHANNELS

    def __init__(self, network: UNet1D, normalizer: Normalizer, config: MethodConfig):
        super().__init__()
        if network.config.in_channels != self.network_in_channels:
            raise ValueError(
                f"method {self.name!r} needs a network with in_channels={self.network_in_channels}, "
                f"got {network.config.in_channels}"
            )
        self.network = network
        self.normalizer = normalizer
        self.config = config

    # -- batch helpers ---------------------------------------------------------------------
    @property
    def scalar_key(self) -> str:
        return "energy_diff" if self.task == "modification" else "formation_energy"

    def conditions(self, batch: dict) -> dict:
        """The network's condition inputs (normalised) for a batch."""
        return {
            "elements": batch["element_features"].float(),
            "spacegroup": batch["spacegroup"].float(),
            "energy": self.normalizer.encode_scalar(batch[self.scalar_key]),
            "nsites": batch["nsites"],
        }

    def sampling_conditions(self, batch: dict) -> dict:
        """:meth:`conditions` plus their encoding, computed once for all sampling steps."""
        cond = self.conditions(batch)
        cond["cached"] = self.network.encode_conditions(**cond)
        return cond

    def target(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised target tensor with zeroed padding rows, and its mask."""
        mask = row_mask(batch["nsites"])
        return self.normalizer.encode(batch["coords_lattice"].float()) * mask, mask

    def initial(self, batch: dict) -> torch.Tensor:
        """Normalised initial structure x0 (modification methods)."""
        if "init_coords_lattice" not in batch:
            raise KeyError(f"method {self.name!r} modifies a structure: the batch needs 'init_coords_lattice'")
        nsites = batch.get("init_nsites", batch["nsites"])
        return self.normalizer.encode(batch["init_coords_lattice"].float()) * row_mask(nsites)

    def finish(self, z: torch.Tensor, batch: dict) -> torch.Tensor:
        """Normalised network output -> physical tensor with zero padding rows."""
        return self.normalizer.decode(z.float()) * row_mask(batch["nsites"])

    def reduce_loss(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, nsites: torch.Tensor) -> torch.Tensor:
        """Per-structure loss on atom + lattice rows (padding ignored), averaged over the batch.

        l1: :func:`crystalgen.losses.l1_loss` (coordinates summed / nsites + lattice);
        pbc: the periodic-image-aware L1 of paper A.4, on fractional coordinates;
        l2: squared error averaged over the valid entries (the usual eps / velocity loss).
        """
        kind = self.config.loss or self.default_loss
        pred = pred.float()
        if kind == "l1":
            return losses.l1_loss(pred * mask, target, nsites)
        if kind == "pbc":
            coords = losses.pbc_coords_l1((pred + 1) / 2, (target + 1) / 2, nsites) * 2
            return (coords + losses.lattice_l1(pred, target)).mean()
        err = ((pred - target) * mask).square()
        return (err.sum(dim=(1, 2)) / (mask.sum(dim=(1, 2)) * 3)).mean()

    def forward(self, batch: dict) -> torch.Tensor:
        return self.loss(batch)

    def loss(self, batch: dict) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, batch: dict, steps: int | None = None, generator: Generator = None) -> torch.Tensor:
        """Generate (B, 64, 3) physical crystal tensors for the conditions in ``batch``."""
        raise NotImplementedError  # pragma: no cover
