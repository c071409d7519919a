"""The conditional 1D UNet: sizes, conditioning paths and configuration errors."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from crystalgen.models.unet import UNet1D, UNetConfig, count_parameters

from model_helpers import TINY_MODEL


def _inputs(b: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(b, 64, 3, generator=g),
        t=torch.rand(b, generator=g) * 1000,
        elements=torch.rand(b, 64, 125, generator=g),
        spacegroup=torch.rand(b, 192, 4, 4, generator=g),
        energy=torch.randn(b, generator=g),
        nsites=torch.randint(1, 60, (b,), generator=g),
    )


def _randomised(config: UNetConfig) -> UNet1D:
    """A network whose zero-initialised output layers are randomised, so every input matters."""
    torch.manual_seed(0)
    net = UNet1D(config)
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.1)
    return net.eval()


def test_paper_configuration_has_about_305m_parameters():
    with torch.device("meta"):
        net = UNet1D(UNetConfig())
    assert 2.9e8 < count_parameters(net) < 3.3e8


def test_output_shape_and_every_condition_changes_the_output():
    net = _randomised(UNetConfig(**TINY_MODEL))
    base = _inputs()
    out = net(**base)
    assert out.shape == (3, 64, 3)
    for name in ("x", "t", "elements", "spacegroup", "energy", "nsites"):
        changed = dict(base)
        changed[name] = _inputs(seed=1)[name]
        assert not torch.allclose(net(**changed), out), f"output ignores {name}"


def test_palette_network_uses_the_initial_structure():
    net = _randomised(UNetConfig(**TINY_MODEL, in_channels=6))
    inputs = _inputs()
    x0 = torch.randn(3, 64, 3)
    assert not torch.allclose(net(**inputs, x_cond=x0), net(**inputs, x_cond=x0 + 1))
    with pytest.raises(ValueError, match="x_cond"):
        net(**inputs)


def test_fresh_network_predicts_zero():
    """Zero-initialised output layers: training starts from the 'predict the mean' solution."""
    net = UNet1D(UNetConfig(**TINY_MODEL))
    assert net(**_inputs()).abs().max() == 0


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"channel_mult": [1, 2, 2, 2, 2, 2, 2, 2]}, "cannot be halved"),
        ({"attention_levels": [5]}, "attention_levels"),
        ({"in_channels": 4}, "in_channels"),
        ({"model_chanels": 4}, "model_chanels"),
    ],
)
def test_bad_configuration_is_rejected_with_the_field_named(bad, message):
    with pytest.raises(ValidationError, match=message):
        UNetConfig(**bad)
