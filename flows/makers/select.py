"""Select stage: the MLIP e_above_hull window and StructureMatcher dedupe decide what is relaxed."""

from __future__ import annotations

from dataclasses import dataclass

from jobflow import Flow, Response, job
from pymatgen.core import Structure

from flows import candidates as cands
from flows.dedupe import StructureIndex
from flows.makers.hull import HullMaker
from flows.makers.relax import MlipRelaxMaker, VaspRelaxMaker
from flows.schemas import CandidateState
from flows.stages import Stage, StageMaker

#: candidates that already passed selection in an earlier run
ALREADY_SELECTED = (CandidateState.SELECTED, CandidateState.RELAXED, CandidateState.RANKED)


@dataclass
class SelectMaker(StageMaker):
    """Keep pre-relaxed candidates within the window, best first, once per crystal; fan out relax + hull."""

    stage = Stage.SELECT
    name: str = "select"
    e_above_hull_window: float = 0.1
    dedupe: bool = True
    max_selected: int | None = None
    relax: MlipRelaxMaker | VaspRelaxMaker | None = None
    hull: HullMaker | None = None

    def make(self, candidate_ids, chunk_summaries=None):
        return self.tag(self.select(candidate_ids, chunk_summaries))

    @job
    def select(self, candidate_ids: list[str], chunk_summaries: list | None = None) -> Response:
        coll = cands.collection()
        docs = list(cands.get(coll, candidate_ids).values())
        kept = StructureIndex()
        for doc in docs:
            if doc.stage in ALREADY_SELECTED:
                kept.add(doc.candidate_id, Structure.from_dict(doc.structure))
        fresh = sorted((d for d in docs if d.stage == CandidateState.PRERELAXED), key=lambda d: d.prerelax.e_above_hull)
        for doc in fresh:
            cid, ehull = doc.candidate_id, doc.prerelax.e_above_hull
            if ehull > self.e_above_hull_window:
                cands.set_stage(coll, cid, CandidateState.REJECTED, {"rejected_reason": "above MLIP e_above_hull window"},
                                reason=f"MLIP e_above_hull {ehull:.3f} > {self.e_above_hull_window}")
                continue
            if self.max_selected is not None and len(kept) >= self.max_selected:
                cands.set_stage(coll, cid, CandidateState.REJECTED, {"rejected_reason": "max_selected reached"})
                continue
            structure = Structure.from_dict(doc.structure)
            if self.dedupe and (twin := kept.twin_of(structure)) is not None:
                cands.set_stage(coll, cid, CandidateState.REJECTED, {"rejected_reason": f"duplicate of {twin}"},
                                duplicate_of=twin)
                continue
            kept.add(cid, structure)
            cands.set_stage(coll, cid, CandidateState.SELECTED)
        to_relax = cands.at_stage(coll, candidate_ids, CandidateState.SELECTED)
        jobs, outputs = self.relax.relax_jobs(to_relax)
        hull = self.hull.make(candidate_ids, outputs)
        return Response(replace=Flow([*jobs, hull], name="relax and hull"))
