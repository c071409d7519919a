"""Where an energy came from, so the hull never silently mixes incompatible numbers.

An *energy source* is a small dict: ``{"engine": "mlip", "potential": <name>}`` or
``{"engine": "vasp", "GGA": "PE", "ENCUT": 500.0, "LDAU": False}``. Two energies may share one
convex hull only when their sources agree on :data:`COMPARED_KEYS` (or the campaign names an
explicit compatibility scheme).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

COMPARED_KEYS = ("engine", "potential", "GGA", "METAGGA", "ENCUT", "LDAU")

#: Materials Project GGA(+U) relaxations (MPRelaxSet): PBE, 520 eV.
MATERIALS_PROJECT_SOURCE = {"engine": "vasp", "GGA": "PE", "ENCUT": 520.0, "LDAU": True, "provider": "materials_project"}


def mlip_source(potential_name: str) -> dict[str, Any]:
    return {"engine": "mlip", "potential": potential_name}


def vasp_source(incar: dict[str, Any]) -> dict[str, Any]:
    source = {
        "engine": "vasp",
        "GGA": str(incar.get("GGA", "PE")).upper(),
        "ENCUT": float(incar["ENCUT"]) if "ENCUT" in incar else None,
        "LDAU": bool(incar.get("LDAU", False)),
    }
    if incar.get("METAGGA"):
        source["METAGGA"] = str(incar["METAGGA"]).upper()
    return source


def mismatch(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The compared keys on which two sources differ (empty: compatible)."""
    return {key: (a.get(key), b.get(key)) for key in COMPARED_KEYS if a.get(key) != b.get(key)}


@lru_cache(maxsize=4)
def load_mlip(spec: str | None):
    """The potential for ``spec`` (None: settings, then the shipped default), loaded once per process.

    It must pass the sanity guard first (cached per weights fingerprint, so jobs do not repeat it):
    raises ``ValueError`` or ``PotentialSanityError`` naming the model.
    """
    from crystalgen.potentials import check_potential, load_potential
    from crystalgen.settings import get_settings

    potential = load_potential(spec or get_settings().potential)
    check_potential(potential)
    return potential
