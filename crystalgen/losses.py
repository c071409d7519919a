"""Training losses on the (B, 64, 3) coordinate+lattice array.

Both losses score atom rows ``0..nsites-1`` and the lattice rows 61-63 only; zero padding rows
and row 60 never contribute. Per structure: the coordinate term is the L1 distance summed over
xyz and averaged over its atoms (sum / nsites); the lattice term is the L1 distance summed over
xyz and averaged over the 3 lattice vectors. The batch loss is the mean over structures.

:func:`pbc_l1_loss` is the periodic-boundary-aware loss of paper A.4. An atom whose target
fractional coordinate lies on a face, edge or vertex of the unit cell (coordinate ~0) is equally
well described by its periodic images (coordinate ~1), so its distance is the smooth minimum
over those images: the p-norm ``(sum_s d_s^k)^(1/k)`` with a large negative order ``k``
(``-> min`` as ``k -> -inf``), computed in log space so it stays finite and differentiable. Only
images across boundaries the target touches are used, so an interior atom is scored with its
plain distance. With m valid images the smooth minimum lies between ``min * m^(1/k)`` and ``min``
(m <= 8: within 4 % for the default k = -50). The code is device-agnostic (every tensor follows
``pred``) and computes in float32 even under fp16/bf16 autocast.
"""

from __future__ import annotations

import itertools

import torch

from crystalgen.layout import LATTICE_ROWS, MAX_SITES, N_ROWS

_SHIFTS = torch.tensor(list(itertools.product((-1.0, 0.0, 1.0), repeat=3)))  # (27, 3)


def atom_mask(nsites: torch.Tensor, n_rows: int = N_ROWS) -> torch.Tensor:
    """(B, n_rows) bool: True on rows that hold atoms."""
    rows = torch.arange(n_rows, device=nsites.device)
    return rows.unsqueeze(0) < nsites.reshape(-1, 1)


def lattice_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) L1 over the lattice rows, summed over xyz, averaged over the three vectors."""
    return (pred[:, LATTICE_ROWS] - target[:, LATTICE_ROWS]).abs().sum(-1).mean(-1)


def _per_atom_mean(per_row: torch.Tensor, nsites: torch.Tensor) -> torch.Tensor:
    mask = atom_mask(nsites, per_row.shape[1]).to(per_row.dtype)
    return (per_row * mask).sum(-1) / nsites.to(per_row.dtype).clamp(min=1)


def coords_l1(pred: torch.Tensor, target: torch.Tensor, nsites: torch.Tensor) -> torch.Tensor:
    """(B,) plain L1 over atom rows: sum over xyz and atoms / nsites."""
    d = (pred[:, :MAX_SITES] - target[:, :MAX_SITES]).abs().sum(-1)
    return _per_atom_mean(d, nsites)


def l1_loss(pred: torch.Tensor, target: torch.Tensor, nsites: torch.Tensor) -> torch.Tensor:
    """Scalar: mean over the batch of ``coords_l1 + lattice_l1``."""
    return (coords_l1(pred, target, nsites) + lattice_l1(pred, target)).mean()


def pbc_coords_l1(
    pred: torch.Tensor,
    target: torch.Tensor,
    nsites: torch.Tensor,
    order: float = -50.0,
    boundary_tol: float = 1e-3,
    eps: float = 1e-8,
) -> torch.Tensor:
    """(B,) periodic-image-aware coordinate L1 (see module docstring).

    ``order`` is the negative p-norm order ``k``; ``boundary_tol`` how close (fractional) a
    target coordinate must be to 0 or 1 to count as on a boundary.
    """
    if order >= 0:
        raise ValueError(f"order must be negative for a smooth minimum, got {order}")
    p = pred[:, :MAX_SITES].float()
    t = target[:, :MAX_SITES].float()
    shifts = _SHIFTS.to(device=p.device, dtype=p.dtype)  # (27, 3)
    images = t.unsqueeze(2) + shifts  # (B, 60, 27, 3)
    # A shift of +1 (-1) along an axis is a valid image only if the target sits at 0 (at 1).
    near0 = (t < boundary_tol).unsqueeze(2)
    near1 = (t > 1.0 - boundary_tol).unsqueeze(2)
    allowed = (shifts == 0) | ((shifts > 0) & near0) | ((shifts < 0) & near1)
    valid = allowed.all(-1)  # (B, 60, 27); the zero shift is always valid
    d = (p.unsqueeze(2) - images).abs().sum(-1).clamp(min=eps)
    logs = torch.where(valid, order * torch.log(d), torch.full_like(d, float("-inf")))
    smooth_min = torch.exp(torch.logsumexp(logs, dim=-1) / order)  # (B, 60)
    return _per_atom_mean(smooth_min, nsites).to(pred.dtype)


def pbc_l1_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    nsites: torch.Tensor,
    order: float = -50.0,
    boundary_tol: float = 1e-3,
) -> torch.Tensor:
    """Scalar: mean over the batch of ``pbc_coords_l1 + lattice_l1``."""
    coords = pbc_coords_l1(pred, target, nsites, order=order, boundary_tol=boundary_tol)
    return (coords + lattice_l1(pred, target)).mean()
