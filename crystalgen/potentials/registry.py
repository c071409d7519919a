"""Turn a potential spec (None, a known name, or a model folder) into a loaded :class:`Potential`.

Nothing is ever downloaded: the default model ships inside the package, CHGNet ships inside its
wheel, and other matgl models are read from folders (the ``matgl_models`` setting,
``$CRYSTALGEN_MATGL_MODELS``: directories that contain ``<model name>/model.json``, e.g. a
cluster's copy of matgl's ``pretrained_models``).
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


def known_potentials() -> list[str]:
    return [*MATGL_MODELS, *(f"CHGNet-{v}" for v in CHGNET_VERSIONS)]


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


def load_potential(spec: str | os.PathLike | Potential | None = None, device: str | None = None) -> Potential:
    """Load a potential: ``None`` = the embedded default, a known name, or a matgl model folder.

    ``device`` (``auto``/``cpu``/``cuda[:N]``; default: the ``potential_device`` setting, auto)
    picks where it runs. Raises ``ValueError`` naming the spec and what is available when it cannot
    be resolved.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if isinstance(spec, Potential):
        return spec
    if spec is None:
        spec = DEFAULT_POTENTIAL
    text = str(spec)
    if text.lower().startswith("chgnet"):
        version = text.split("-", 1)[1] if "-" in text else CHGNET_VERSIONS[0]
        if version not in CHGNET_VERSIONS:
            raise ValueError(f"unknown CHGNet version {version!r}; available: {', '.join(CHGNET_VERSIONS)}")
        from crystalgen.potentials.chgnet_potential import CHGNetPotential

        return CHGNetPotential(version, device)
    if is_matgl_model_dir(Path(text).expanduser()):
        return open_matgl_potential(Path(text).expanduser(), device=device)
    by_lower = {name.lower(): name for name in MATGL_MODELS}
    if text.lower() in by_lower:
        name = by_lower[text.lower()]
        if path := _matgl_model_dir(name):
            return open_matgl_potential(path, name=name, device=device)
        raise ValueError(
            f"potential {name!r} is not available offline: put its folder (model.json, model.pt, state.pt) "
            "under a directory listed in the matgl_models setting ($CRYSTALGEN_MATGL_MODELS)"
        )
    raise ValueError(
        f"unknown potential {text!r}: give a matgl model folder or one of {', '.join(known_potentials())}"
    )


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
