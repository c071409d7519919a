"""Training/sampling methods behind one interface, selectable by name.

Seven trained methods: generation with diffusion (sampled by DDPM or DDIM), CFM from normal or
uniform noise, and regression; modification with regression, Palette diffusion and CFM. 'ddpm'
and 'ddim' train the same model and differ only in the sampler, so a checkpoint trained under
either name samples with both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crystalgen.methods.base import Method, MethodConfig, Normalizer, row_mask
from crystalgen.methods.diffusion import Diffusion, Palette
from crystalgen.methods.flow import FlowMatching, ModificationFlow
from crystalgen.methods.regression import ModificationRegression, Regression
from crystalgen.models.unet import UNet1D


@dataclass(frozen=True)
class MethodSpec:
    cls: type[Method]
    options: dict[str, Any] = field(default_factory=dict)
    stochastic: bool = True

    @property
    def task(self) -> str:
        return self.cls.task

    @property
    def in_channels(self) -> int:
        return self.cls.network_in_channels

    @property
    def family(self) -> str:
        """Methods of one family share a trained network (they differ only in how they sample)."""
        return f"{self.cls.__name__}:{self.options.get('source', '')}"


METHODS: dict[str, MethodSpec] = {
    "ddpm": MethodSpec(Diffusion, {"sampler": "ddpm"}),
    "ddim": MethodSpec(Diffusion, {"sampler": "ddim"}),
    "cfm-n": MethodSpec(FlowMatching, {"source": "normal"}),
    "cfm-u": MethodSpec(FlowMatching, {"source": "uniform"}),
    "regression": MethodSpec(Regression, stochastic=False),
    "mod-regression": MethodSpec(ModificationRegression, stochastic=False),
    "mod-palette": MethodSpec(Palette, {"sampler": "ddpm"}),
    "mod-palette-ddim": MethodSpec(Palette, {"sampler": "ddim"}),
    "mod-cfm": MethodSpec(ModificationFlow, {"source": "structure"}, stochastic=False),
}
GENERATION_METHODS = [name for name, spec in METHODS.items() if spec.task == "generation"]
MODIFICATION_METHODS = [name for name, spec in METHODS.items() if spec.task == "modification"]


def method_spec(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


def build_method(config: MethodConfig, network: UNet1D, normalizer: Normalizer, name: str | None = None) -> Method:
    """The method called ``name`` (default: ``config.name``) around ``network``.

    Sampling a checkpoint with another method name is allowed inside one family only
    (a 'ddpm' network samples as 'ddim'; a CFM network cannot be sampled by DDPM).
    """
    trained = method_spec(config.name)
    spec = method_spec(name or config.name)
    if spec.family != trained.family:
        raise ValueError(
            f"a network trained with method {config.name!r} cannot be sampled as {name!r} "
            f"(compatible: {', '.join(n for n, s in METHODS.items() if s.family == trained.family)})"
        )
    method = spec.cls(network, normalizer, config, **spec.options)
    method.name = name or config.name
    return method


__all__ = [
    "METHODS",
    "GENERATION_METHODS",
    "MODIFICATION_METHODS",
    "Method",
    "MethodConfig",
    "Normalizer",
    "build_method",
    "method_spec",
    "row_mask",
]
