"""Losses: periodic images of boundary atoms cost ~nothing, padding never counts, gradients finite."""

from __future__ import annotations

import pytest
import torch

from crystalgen.losses import l1_loss, pbc_coords_l1, pbc_l1_loss

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _pair(target_atoms, pred_atoms, nsites=None, device="cpu"):
    target = torch.zeros(1, 64, 3)
    pred = torch.zeros(1, 64, 3)
    n = len(target_atoms)
    target[0, :n] = torch.tensor(target_atoms)
    pred[0, :n] = torch.tensor(pred_atoms)
    lattice = torch.eye(3) * 4.0
    target[0, 61:] = lattice
    pred[0, 61:] = lattice
    nsites = torch.tensor([n if nsites is None else nsites])
    return pred.to(device), target.to(device), nsites.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "target_atom, image",
    [
        ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),  # vertex -> opposite vertex
        ([0.0, 0.0, 0.0], [1.0, 0.0, 1.0]),  # vertex -> another vertex
        ([0.0, 0.0, 0.3], [1.0, 1.0, 0.3]),  # edge
        ([0.5, 0.0, 0.5], [0.5, 1.0, 0.5]),  # face
    ],
)
def test_periodic_image_of_boundary_atom_costs_nothing(device, target_atom, image):
    pred, target, nsites = _pair([target_atom, [0.5, 0.5, 0.5]], [image, [0.5, 0.5, 0.5]], device=device)
    assert pbc_l1_loss(pred, target, nsites).item() < 1e-4
    assert l1_loss(pred, target, nsites).item() > 0.4  # the plain loss would punish it


@pytest.mark.parametrize("device", DEVICES)
def test_interior_atom_gets_plain_distance(device):
    pred, target, nsites = _pair([[0.5, 0.4, 0.3], [0.2, 0.2, 0.2]], [[0.6, 0.4, 0.1], [0.9, 0.2, 0.2]], device=device)
    # atom 1: 0.1 + 0 + 0.2 = 0.3; atom 2: 0.7 (an image would be 0.3 away, but 0.2 is interior)
    expected = (0.3 + 0.7) / 2
    assert pbc_coords_l1(pred, target, nsites).item() == pytest.approx(expected, abs=1e-6)
    assert pbc_l1_loss(pred, target, nsites).item() == pytest.approx(l1_loss(pred, target, nsites).item(), abs=1e-6)


def test_smooth_minimum_close_to_true_minimum():
    # Target at a vertex, prediction halfway between two of its images: true min distance 0.5 + 0.1.
    pred, target, nsites = _pair([[0.0, 0.0, 0.5]], [[0.5, 0.1, 0.5]])
    value = pbc_coords_l1(pred, target, nsites).item()
    assert 0.6 * 0.95 < value <= 0.6 + 1e-6
    sharper = pbc_coords_l1(pred, target, nsites, order=-500.0).item()
    assert value < sharper <= 0.6 + 1e-6


def test_padding_rows_contribute_nothing():
    pred, target, nsites = _pair([[0.5, 0.5, 0.5]], [[0.6, 0.5, 0.5]])
    base_pbc = pbc_l1_loss(pred, target, nsites).item()
    base_l1 = l1_loss(pred, target, nsites).item()
    pred[0, 1:61] = torch.rand(60, 3)  # garbage in padding rows, including row 60
    assert pbc_l1_loss(pred, target, nsites).item() == pytest.approx(base_pbc, abs=1e-7)
    assert l1_loss(pred, target, nsites).item() == pytest.approx(base_l1, abs=1e-7)
    assert base_pbc == pytest.approx(0.1, abs=1e-6)


def test_zero_padding_rows_are_not_vertex_atoms():
    # The seed code's bug: zero padding rows looked like atoms at the vertex (0,0,0).
    pred, target, nsites = _pair([[0.5, 0.5, 0.5]], [[0.5, 0.5, 0.5]])
    pred[0, 1:60] = 1.0  # an "image" of the zero padding rows: must still not matter
    assert pbc_l1_loss(pred, target, nsites).item() == pytest.approx(0.0, abs=1e-7)


def test_lattice_term_and_batch_mean():
    pred, target, nsites = _pair([[0.5, 0.5, 0.5]], [[0.5, 0.5, 0.5]])
    pred[0, 61, 0] += 0.3
    assert l1_loss(pred, target, nsites).item() == pytest.approx(0.1, abs=1e-6)
    assert pbc_l1_loss(pred, target, nsites).item() == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_finite_including_exact_hits(device):
    torch.manual_seed(0)
    target = torch.rand(4, 64, 3, device=device)
    target[:, 0] = 0.0  # vertex atoms
    pred = target.clone()
    pred[:, 0] = 1.0  # exactly on an image: distance 0 for that image
    pred[:, 1] += 0.05
    pred.requires_grad_(True)
    nsites = torch.tensor([3, 10, 60, 1], device=device)
    loss = pbc_l1_loss(pred, target, nsites)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    assert pred.grad[0, 3:61].abs().sum() == 0  # padding rows get no gradient
    assert pred.grad[0, 1].abs().sum() > 0


def test_half_precision_inputs():
    pred, target, nsites = _pair([[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]])
    loss = pbc_l1_loss(pred.to(torch.bfloat16), target.to(torch.bfloat16), nsites)
    assert torch.isfinite(loss) and loss.item() < 1e-2
