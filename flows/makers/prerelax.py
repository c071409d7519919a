"""Pre-relax stage: batched MLIP relaxation of the generated candidates, in resumable chunks."""

from __future__ import annotations

from dataclasses import dataclass

from jobflow import Flow, Response, job

from flows import candidates as cands
from flows.costs import measured
from flows.energies import MlipSettings
from flows.makers.select import SelectMaker
from flows.references import ReferenceSource, mlip_references
from flows.schemas import CandidateState, PrerelaxRecord
from flows.stages import Stage, StageMaker


@dataclass
class PrerelaxMaker(StageMaker):
    """Split the candidates still at ``generated`` into chunks, one job each, then hand over to selection.

    A chunk is the unit a killed run resumes from: its candidates are recorded when it finishes.
    """

    stage = Stage.PRERELAX
    name: str = "prerelax"
    chunk_size: int = 64
    chunk: PrerelaxChunkMaker | None = None
    select: SelectMaker | None = None

    def make(self, generated):
        return self.tag(self.fan_out(generated))

    @job
    def fan_out(self, generated: dict[str, int]) -> Response:
        """``generated``: the generate job's counts (it runs after generation; candidates come from the database)."""
        pending = cands.ids_at_stage(cands.collection(), self.campaign, CandidateState.GENERATED)
        size = self.chunk_size
        groups = [pending[i : i + size] for i in range(0, len(pending), size)]
        chunks = [self.chunk.make(ids, f"{self.name} {i + 1}/{len(groups)}") for i, ids in enumerate(groups)]
        select = self.select.make([c.output for c in chunks])
        return Response(replace=Flow([*chunks, select], name=self.name))


@dataclass
class PrerelaxChunkMaker(StageMaker):
    """Relax one chunk of candidates with the MLIP; the MLIP e_above_hull of each is taken against the
    reference phases relaxed with the same potential and settings."""

    stage = Stage.PRERELAX
    name: str = "prerelax chunk"
    mlip: MlipSettings | None = None
    references: ReferenceSource | None = None

    def make(self, candidate_ids, name: str | None = None):
        chunk = self.relax_chunk(candidate_ids)
        chunk.name = name or self.name
        return self.tag(chunk, candidate_ids)

    @job
    def relax_chunk(self, candidate_ids: list[str]) -> dict[str, int]:
        """Relax one chunk; record energy and MLIP e_above_hull, or why it failed."""
        with measured(self.campaign, self.stage, "prerelax chunk", candidate_ids) as meter:
            return cands.relax_and_record(candidate_ids, CandidateState.GENERATED, self.mlip, "prerelax",
                                          CandidateState.PRERELAXED, self._records, meter)

    def _records(self, docs, results):
        from flows.hull import e_above_hull

        refs = mlip_references(self.references, self.mlip, cands.database())
        ok = [(d, r) for d, r in zip(docs, results, strict=True) if r.error is None]
        hull = e_above_hull([(d.candidate_id, d.formula, r.energy_per_atom) for d, r in ok], refs)
        version = self.mlip.loaded().version

        def record(doc, result):
            return {"prerelax": PrerelaxRecord(energy_per_atom=result.energy_per_atom, potential=version,
                                               e_above_hull=hull[doc.candidate_id].e_above_hull,
                                               converged=result.converged, steps=result.steps)}

        return record
