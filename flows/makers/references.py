"""References stage: relax the reference phases with the pre-relaxation's potential, once per settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobflow import job
from pymatgen.core import Composition

from flows import candidates as cands
from flows.costs import measured
from flows.energies import MlipSettings
from flows.references import ReferenceSource, mlip_references
from flows.stages import Stage, StageMaker


@dataclass
class ReferencesMaker(StageMaker):
    """The hull formation energy of every composition, from references relaxed like the pre-relaxed candidates.

    Hull-relative target energies of the conditions grid start from these values.
    """

    stage = Stage.REFERENCES
    name: str = "references"
    references: ReferenceSource | None = None
    mlip: MlipSettings | None = None
    compositions: list[str] = field(default_factory=list)

    def make(self):
        return self.tag(self.hull_energies())

    @job
    def hull_energies(self) -> dict[str, Any]:
        with measured(self.campaign, self.stage, self.name) as meter, meter.science():
            refs = mlip_references(self.references, self.mlip, cands.database())
        hull = {Composition(f).reduced_formula: refs.hull_formation_energy(f) for f in self.compositions}
        return {"hull_formation_energy": hull, "label": refs.label, "energy_source": refs.energy_source,
                "notes": refs.notes}
