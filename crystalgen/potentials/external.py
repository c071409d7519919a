"""MACE, ORB and MatterSim from local model files, through their packages' ASE calculators.

Their pretrained models are downloaded by name at run time (none ships in a wheel), so here every
one of them takes a file: fetch it where there is network access and name its path. The checks that
refuse a missing file run before the package is imported, so a wrong spec fails in milliseconds.
Each also knows its TorchSim wrapper (``prerelax.relaxer: torchsim``, Python >= 3.12 environment).
"""

from __future__ import annotations

from crystalgen.potentials.ase_potential import AseCalculatorPotential
from crystalgen.potentials.base import resolve_device
from crystalgen.potentials.offline import DownloadRequired, require_file, require_module


def _version(package: str) -> str:
    from importlib.metadata import version

    return f"{package} {version(package)}"


EXAMPLES = {"mace": "mace:/models/mace-mpa-0-medium.model",
            "orb": "orb:orb-v3-conservative-inf-omat:/models/orb-v3-conservative-inf-omat.ckpt",
            "mattersim": "mattersim:/models/mattersim-v1.0.0-5M.pth"}


def weights_file(family: str, argument: str) -> str:
    """The local weights file a ``mace:``/``orb:``/``mattersim:`` spec names, or :class:`DownloadRequired`."""
    if family == "orb":
        model_name, _, weights = argument.partition(":")
        if not weights:
            raise DownloadRequired(f"<{model_name}.ckpt>", f"orb-models would download the weights of "
                                   f"{model_name!r}; give them as orb:{model_name}:/path/to/weights.ckpt")
        argument = weights
    return require_file(argument, family, EXAMPLES[family])


def mace_potential(argument: str, device: str | None = None) -> AseCalculatorPotential:
    """``mace:<file>``: a MACE model file (e.g. mace-mpa-0-medium.model), float64 as MACE relaxes."""
    from pathlib import Path

    path = weights_file("mace", argument)
    require_module("mace", "mace-torch")
    from mace.calculators import MACECalculator

    device = resolve_device(device)
    calculator = MACECalculator(model_paths=path, device=device, default_dtype="float64")

    def torchsim():
        import torch
        from torch_sim.models.mace import MaceModel

        return MaceModel(model=torch.load(path, map_location=device, weights_only=False), device=device,
                         dtype=torch.float64, compute_forces=True, compute_stress=True)

    name = f"MACE-{Path(path).stem}"
    return AseCalculatorPotential(calculator, name, f"{name} ({_version('mace-torch')})", device=device,
                                  model=calculator.models[0], torchsim_factory=torchsim)


def orb_potential(argument: str, device: str | None = None) -> AseCalculatorPotential:
    """``orb:<model>:<weights file>``: an orb-models architecture (e.g. orb-v3-conservative-inf-omat) and its weights."""
    model_name = argument.partition(":")[0]
    path = weights_file("orb", argument)
    require_module("orb_models", "orb-models")
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.calculator import ORBCalculator

    loader = getattr(pretrained, model_name.replace("-", "_"), None)
    if loader is None:
        raise ValueError(f"unknown orb model {model_name!r} (a function of orb_models.forcefield.pretrained)")
    device = resolve_device(device)
    orbff = loader(weights_path=path, device=device)

    def torchsim():
        from torch_sim.models.orb import OrbModel

        return OrbModel(model=orbff, device=device)

    name = f"ORB-{model_name}"
    return AseCalculatorPotential(ORBCalculator(orbff, device=device), name, f"{name} ({_version('orb-models')})",
                                  device=device, model=orbff, torchsim_factory=torchsim)


def mattersim_potential(argument: str, device: str | None = None) -> AseCalculatorPotential:
    """``mattersim:<file>``: a MatterSim checkpoint (e.g. mattersim-v1.0.0-5M.pth)."""
    from pathlib import Path

    path = weights_file("mattersim", argument)
    require_module("mattersim", "mattersim")
    from mattersim.forcefield import MatterSimCalculator

    device = resolve_device(device)
    calculator = MatterSimCalculator(load_path=path, device=device)

    def torchsim():
        from torch_sim.models.mattersim import MatterSimModel

        return MatterSimModel(model=calculator.potential.model, device=device)

    name = f"MatterSim-{Path(path).stem}"
    return AseCalculatorPotential(calculator, name, f"{name} ({_version('mattersim')})", device=device,
                                  model=calculator.potential.model, torchsim_factory=torchsim)
