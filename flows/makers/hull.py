"""Hull stage: e_above_hull of every relaxed candidate against references from the same energy source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from jobflow import job
from pymatgen.core import Structure

from flows import candidates as cands
from flows.costs import measured
from flows.dedupe import relaxed_duplicates
from flows.energies import MlipSettings
from flows.references import ReferenceSet, ReferenceSource, mlip_references, stored_references, vasp_references
from flows.schemas import CandidateState, HullRecord
from flows.stages import Stage, StageMaker


@dataclass
class HullMaker(StageMaker):
    """Rank the relaxed candidates on the convex hull of the reference phases.

    The references' energies come from the candidates' own source: ``engine: mlip`` relaxes them
    with the stand-in's ``mlip`` settings; ``vasp`` uses the campaign's VASP relaxations of them
    (``recompute``) or the energies stored with them, which must then match or be accepted under
    ``compatibility``. Each candidate is also marked ``novel`` unless it matches a relaxed reference
    phase or a structure of ``novelty_checkpoint``'s training set (``matches`` names it).
    """

    stage = Stage.HULL
    name: str = "hull"
    engine: Literal["mlip", "vasp"] = "vasp"
    references: ReferenceSource | None = None
    mlip: MlipSettings | None = None
    incar: dict[str, Any] | None = None
    recompute: bool = True
    compatibility: str | None = None
    novelty_checkpoint: str | None = None
    stability_window: float = 0.1

    def make(self, relax_outputs=None):
        return self.tag(self.rank(relax_outputs))

    def novelty_index(self, refs: ReferenceSet):
        """Known structures a novel candidate must not match (reference phases first)."""
        from crystalgen.novelty import NoveltyIndex
        from flows.known_sources import novelty_structures

        return NoveltyIndex(novelty_structures(refs, self.novelty_checkpoint))

    def reference_set(self, db, progress: bool = True) -> ReferenceSet:
        if self.engine == "mlip":
            return mlip_references(self.references, self.mlip, db, progress)
        if self.recompute:
            return vasp_references(self.references, self.incar, db)
        return stored_references(self.references, db)

    @job
    def rank(self, relax_outputs: list | None = None) -> dict[str, Any]:
        """e_above_hull, decomposition, below-hull flag and twin of every relaxed candidate of the campaign
        (``relax_outputs``: the relaxations it waits for)."""
        from flows.funnel import record_funnel

        with measured(self.campaign, self.stage, self.name):
            ranked = self._rank()
        record_funnel(cands.database(), self.campaign, self.stability_window)  # after its own cost is recorded
        return ranked

    def _rank(self) -> dict[str, Any]:
        from flows.hull import check_sources, e_above_hull

        coll = cands.collection()
        db = cands.database()
        docs = list(cands.in_campaign(coll, self.campaign, CandidateState.RELAXED, CandidateState.RANKED))
        refs = self.reference_set(db)
        warnings = check_sources([d.relax.energy_source for d in docs], refs, self.compatibility)
        results = e_above_hull([(d.candidate_id, d.formula, d.relax.energy_per_atom) for d in docs], refs)
        twins = relaxed_duplicates([(d.candidate_id, Structure.from_dict(d.structure)) for d in docs],
                                   {cid: r.e_above_hull for cid, r in results.items()})
        novelty = self.novelty_index(refs)
        novel = set()
        for doc in docs:
            res = results[doc.candidate_id]
            known = novelty.match(Structure.from_dict(doc.structure))
            if known is None:
                novel.add(doc.candidate_id)
            record = HullRecord(decomposition=res.decomposition, below_hull=res.below_hull, chemsys=res.chemsys,
                                reference_source=refs.label, energy_source=refs.energy_source, warnings=warnings,
                                duplicate_of=twins.get(doc.candidate_id))
            cands.set_stage(coll, doc.candidate_id, CandidateState.RANKED,
                            {"e_above_hull": res.e_above_hull, "hull": record, "novel": known is None, "matches": known},
                            e_above_hull=res.e_above_hull)
        unique = [cid for cid in results if cid not in twins]
        return {"ranked": len(unique), "duplicates": len(twins), "below_hull": sum(results[c].below_hull for c in unique),
                "novel": sum(c in novel for c in unique),
                "reference_source": refs.label, "warnings": warnings}
