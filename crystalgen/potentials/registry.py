"""Turn a potential spec (``family:argument``, a known name, or a model folder) into a loaded :class:`Potential`.

Nothing is ever downloaded: the default model ships inside the package, CHGNet and SevenNet ship
inside their wheels, other matgl models are read from folders (the ``matgl_models`` setting,
``$CRYSTALGEN_MATGL_MODELS``: directories that contain ``<model name>/model.json``, e.g. a
cluster's copy of matgl's ``pretrained_models``), MACE/ORB/MatterSim from model files the user
names, and ``ase:<module>:<factory>`` from any importable ASE calculator factory.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from crystalgen.potentials.base import Potential
from crystalgen.potentials.guard import check_potential
from crystalgen.potentials.matgl_potential import is_matgl_model_dir, open_matgl_potential
from crystalgen.settings import get_settings

DEFAULT_POTENTIAL = "TensorNet-MatPES-PBE-v2025.1-PES"
CHGNET_VERSIONS = ("0.3.0", "0.2.0")
MATGL_MODELS = (
    "TensorNet-MatPES-PBE-v2025.1-PES",
    "M3GNet-MP-2021.2.8-PES",
    "M3GNet-MatPES-PBE-v2025.1-PES",
)


#: SevenNet models whose weights ship inside the sevenn 0.13.0 wheel (``pip install crystalgen[sevenn]``)
SEVENN_SHIPPED = ("7net-0", "7net-0_22may2024", "7net-l3i5", "7net-mf-0:PBE", "7net-mf-0:R2SCAN")


def known_potentials() -> list[str]:
    """Potentials that load by name with no file of the user's (SevenNet: with the sevenn extra)."""
    return [*MATGL_MODELS, *(f"CHGNet-{v}" for v in CHGNET_VERSIONS), *(f"sevenn:{m}" for m in SEVENN_SHIPPED)]


def embedded_model_dir(name: str) -> Path | None:
    path = Path(str(resources.files("crystalgen") / "assets" / "potentials" / name))
    return path if is_matgl_model_dir(path) else None


def _matgl_model_dir(name: str) -> Path | None:
    if path := embedded_model_dir(name):
        return path
    for root in get_settings().matgl_models:
        if is_matgl_model_dir(root / name):
            return root / name
    return None


#: ``family:argument`` prefixes; a spec without one is a known name or a matgl folder (as before)
FAMILIES = ("matgl", "chgnet", "sevenn", "mace", "orb", "mattersim", "ase")
SPEC_GRAMMAR = (
    "matgl:<name|folder>, chgnet[:<version>], sevenn:<model|checkpoint.pth>[:<modal>], mace:<model file>, "
    "orb:<model>:<weights file>, mattersim:<checkpoint file>, ase:<module>:<factory>, or a known name / matgl folder"
)


def parse_spec(spec: str) -> tuple[str, str]:
    """``(family, argument)`` of a potential spec; legacy forms map to their family.

    ``CHGNet-0.3.0`` -> ``("chgnet", "0.3.0")``; a known matgl name or a folder -> ``("matgl", spec)``.
    """
    family, sep, argument = spec.partition(":")
    if sep and family.lower() in FAMILIES:
        return family.lower(), argument
    if spec.lower() == "chgnet" or spec.lower().startswith("chgnet-"):
        return "chgnet", spec.partition("-")[2]
    return "matgl", spec


def _matgl(argument: str, device: str | None) -> Potential:
    folder = Path(argument).expanduser()
    if is_matgl_model_dir(folder):
        return open_matgl_potential(folder, device=device)
    by_lower = {name.lower(): name for name in MATGL_MODELS}
    if argument.lower() in by_lower:
        name = by_lower[argument.lower()]
        if path := _matgl_model_dir(name):
            return open_matgl_potential(path, name=name, device=device)
        raise ValueError(
            f"potential {name!r} is not available offline: put its folder (model.json, model.pt, state.pt) "
            "under a directory listed in the matgl_models setting ($CRYSTALGEN_MATGL_MODELS)"
        )
    raise ValueError(
        f"unknown potential {argument!r}: give a matgl model folder, one of {', '.join(known_potentials())}, "
        f"or a family spec: {SPEC_GRAMMAR}"
    )


def _chgnet(argument: str, device: str | None) -> Potential:
    version = argument or CHGNET_VERSIONS[0]
    if version not in CHGNET_VERSIONS:
        raise ValueError(f"unknown CHGNet version {version!r}; available: {', '.join(CHGNET_VERSIONS)}")
    from crystalgen.potentials.chgnet_potential import CHGNetPotential

    return CHGNetPotential(version, device)


def _sevenn(argument: str, device: str | None) -> Potential:
    from crystalgen.potentials.sevenn_potential import SevenNetPotential

    model, _, modal = argument.partition(":")
    return SevenNetPotential(model or "7net-0", modal or None, device)


def _ase(argument: str, device: str | None) -> Potential:
    from crystalgen.potentials.ase_potential import ase_factory_potential

    return ase_factory_potential(argument)


def _external(family: str):
    def load(argument: str, device: str | None) -> Potential:
        from crystalgen.potentials import external

        return getattr(external, f"{family}_potential")(argument, device)

    return load


LOADERS = {"matgl": _matgl, "chgnet": _chgnet, "sevenn": _sevenn, "ase": _ase,
           **{family: _external(family) for family in ("mace", "orb", "mattersim")}}


def load_potential(spec: str | os.PathLike | Potential | None = None, device: str | None = None) -> Potential:
    """Load a potential from a spec (grammar: :data:`SPEC_GRAMMAR`); ``None`` = the embedded default.

    ``device`` (``auto``/``cpu``/``cuda[:N]``; default: the ``potential_device`` setting, auto)
    picks where it runs. Raises ``ValueError`` naming the spec and what is available when it cannot
    be resolved, :class:`~crystalgen.potentials.offline.DownloadRequired` (a ``ValueError``) naming
    the file to provide when its weights would have to be downloaded.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if isinstance(spec, Potential):
        return spec
    family, argument = parse_spec(str(spec or DEFAULT_POTENTIAL))
    return LOADERS[family](argument, device)


def resolve_potential(spec: str | None) -> str:
    """The potential a run uses: ``spec``, else the ``potential`` setting, else :data:`DEFAULT_POTENTIAL`.

    A name or a folder, as given: what a job records and what :func:`load_potential` takes.
    """
    return str(spec or get_settings().potential or DEFAULT_POTENTIAL)


def checked_potential(spec: str | None) -> Potential:
    """The resolved potential, loaded and passed through :func:`check_potential` once per process.

    Raises what those raise (``ValueError``, ``PotentialSanityError``); failures are not cached.
    """
    return _checked(resolve_potential(spec))


@lru_cache(maxsize=4)
def _checked(spec: str) -> Potential:
    potential = load_potential(spec)
    check_potential(potential)
    return potential
