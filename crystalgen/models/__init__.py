"""Neural networks: the conditional 1D UNet and its condition encoders."""

from crystalgen.models.unet import UNet1D, UNetConfig

__all__ = ["UNet1D", "UNetConfig"]
