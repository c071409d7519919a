"""Test helpers for the flows layer: candidate documents built through the schema, FireWorks failure reports."""

from __future__ import annotations

from pymatgen.core import Composition, Lattice, Structure

from flows import candidates as cands
from flows.schemas import CandidateDoc, CandidateState


def candidate_doc(campaign: str, formula: str, spacegroup: int, energy: float, sample_index: int = 0,
                  stage: CandidateState = CandidateState.GENERATED, structure: dict | None = "default",
                  **fields) -> CandidateDoc:
    condition = {"formula": formula, "spacegroup": spacegroup, "formation_energy": energy, "scheme": "test"}
    comp = Composition(formula)
    if structure == "default":
        structure = Structure(Lattice.cubic(3.2), list(comp.elements)[:1] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()
    return CandidateDoc(candidate_id=cands.candidate_id(campaign, condition, sample_index, 0), campaign=campaign,
                        condition=condition, sample_index=sample_index, seed=0, model={"checkpoint": "test"},
                        formula=comp.reduced_formula, chemsys=comp.chemical_system, stage=stage, structure=structure,
                        **fields)


def fireworks_failures(lpad) -> str:
    """States, and the stack traces of the fizzled fireworks, for assertion messages."""
    lines = [str({fw["name"]: fw["state"] for fw in lpad.fireworks.find({}, {"name": 1, "state": 1})})]
    for fw in lpad.fireworks.find({"state": "FIZZLED"}, {"launches": 1}):
        launch = lpad.launches.find_one({"launch_id": fw["launches"][-1]}) or {}
        lines.append(str(((launch.get("action") or {}).get("stored_data") or {}).get("_exception", {}).get("_stacktrace")))
    return "\n".join(lines)
