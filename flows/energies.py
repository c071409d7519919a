"""Where an energy came from, so the hull never silently mixes incompatible numbers.

An *energy source* is a small dict: ``{"engine": "mlip", "potential": <name>}`` or
``{"engine": "vasp", "GGA": "PE", "ENCUT": 500.0, "LDAU": False}``. Two energies may share one
convex hull only when their sources agree on :data:`COMPARED_KEYS` (or the campaign names an
explicit compatibility scheme).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from flows.stages import MakerSettings

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


class MlipSettings(MakerSettings):
    """How a set of structures is relaxed with a potential; structures compared on one hull share these."""

    potential: str = Field(description="resolved potential spec: a known name or a model folder")
    fmax: float = Field(gt=0)
    steps: int = Field(ge=1)
    batch_size: int = Field(64, ge=1)
    relaxer: Literal["crystalgen", "torchsim"] = "crystalgen"

    def loaded(self):
        """The potential, loaded and checked by the sanity guard once per process (and usable by the relaxer)."""
        from crystalgen.potentials import checked_potential

        potential = checked_potential(self.potential)
        if self.relaxer == "torchsim":
            from crystalgen.relax_torchsim import torchsim_model

            torchsim_model(potential)  # ValueError naming what is missing, before any job runs
        return potential

    def relax(self, structures, description: str, progress: bool = True):
        """Relax ``structures`` with these settings and relaxer; results in input order."""
        if self.relaxer == "torchsim":
            from crystalgen.relax_torchsim import relax_structures_torchsim as relax_structures
        else:
            from crystalgen.relax import relax_structures

        return relax_structures(structures, self.loaded(), fmax=self.fmax, max_steps=self.steps,
                                batch_size=self.batch_size, progress=progress, description=description)
