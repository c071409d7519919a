"""Select stage: the MLIP e_above_hull window and StructureMatcher dedupe decide what is relaxed."""

from __future__ import annotations

from dataclasses import dataclass

from jobflow import Flow, Response, job
from pymatgen.core import Structure

from flows import candidates as cands
from flows.costs import measured
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

    def make(self, chunk_summaries=None):
        return self.tag(self.select(chunk_summaries))

    @job
    def select(self, chunk_summaries: list | None = None) -> Response:
        """``chunk_summaries``: the pre-relax chunks' counts (selection runs once they have all finished)."""
        with measured(self.campaign, self.stage, self.name):
            return self._select()

    def _select(self) -> Response:
        coll = cands.collection()
        kept = StructureIndex()
        for doc in cands.in_campaign(coll, self.campaign, *ALREADY_SELECTED):
            kept.add(doc.candidate_id, Structure.from_dict(doc.structure))
        fresh = {"campaign": self.campaign, "stage": CandidateState.PRERELAXED.value}
        cands.set_stage_many(coll, {**fresh, "prerelax.e_above_hull": {"$gt": self.e_above_hull_window}},
                             CandidateState.REJECTED, {"rejected_reason": "above MLIP e_above_hull window"},
                             reason=f"MLIP e_above_hull > {self.e_above_hull_window}")
        for doc in cands.in_campaign(coll, self.campaign, CandidateState.PRERELAXED,
                                     sort=[("prerelax.e_above_hull", 1), ("grid_index", 1)]):
            cid = doc.candidate_id
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
        jobs, outputs = self.relax.relax_jobs(list(cands.in_campaign(coll, self.campaign, CandidateState.SELECTED)))
        hull = self.hull.make(outputs)
        return Response(replace=Flow([*jobs, hull], name="relax and hull"))
