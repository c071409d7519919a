"""Generate stage: sample one structure per condition and sample index with the generative model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from jobflow import job
from pymatgen.core import Composition, Structure

from flows import candidates as cands
from flows.campaign import ConditionGrid
from flows.costs import measured
from flows.conditions import GridPoint, expand_conditions
from flows.schemas import CandidateDoc, CandidateState, ModelRecord
from flows.stages import Stage, StageMaker

logger = logging.getLogger(__name__)

#: ``model.checkpoint`` of candidates that were given, not sampled
EXPLICIT = "explicit-structures"
#: candidates generated and inserted at a time
BATCH = 10_000


@dataclass
class GenerateMaker(StageMaker):
    """Sample the campaign's conditions not in the database yet; the job returns counts only (a campaign
    of millions of candidates must not make one output document that large).

    ``structures`` (reduced formula -> pymatgen dicts) replaces the model: sample k of a condition
    gets ``structures[formula][k % len]`` (tests, or seeding a campaign with known prototypes).
    ``gpus`` > 1 shards sampling over that many GPUs with torchrun when the node has them.
    """

    stage = Stage.GENERATE
    name: str = "generate"
    grid: ConditionGrid | None = None
    samples_per_condition: int = 1
    seed: int = 0
    checkpoint: str | None = None
    method: str | None = None
    steps: int | None = None
    gpus: int = 1
    structures: dict[str, list[dict]] | None = field(default=None)

    def make(self, hull_formation_energy):
        return self.tag(self.generate(hull_formation_energy))

    @job
    def generate(self, hull_formation_energy: dict[str, float]) -> dict[str, int]:
        points = expand_conditions(self.grid, hull_formation_energy)
        coll = cands.collection()
        wanted = [(p, k) for p in points for k in range(self.samples_per_condition)]
        ids = [self._candidate_id(p, k) for p, k in wanted]
        present = cands.existing_ids(coll, ids)
        todo = [(i, p, k) for i, ((p, k), cid) in enumerate(zip(wanted, ids, strict=True)) if cid not in present]
        inserted = 0
        with measured(self.campaign, self.stage, self.name) as meter:
            for start in range(0, len(todo), BATCH):  # memory stays flat for any grid size
                batch = todo[start : start + BATCH]
                with meter.science():
                    docs = self._explicit(batch) if self.structures is not None else self._sampled(batch)
                inserted += cands.insert_generated(coll, docs)
        logger.info("generate: %d new candidates (%d already present)", inserted, len(present))
        return {"candidates": len(ids), "new": inserted, "present": len(present)}

    def _candidate_id(self, point: GridPoint, k: int) -> str:
        return cands.candidate_id(self.campaign, point.as_dict(), k, self.seed)

    def _doc(self, index: int, point: GridPoint, k: int, model: ModelRecord, structure: dict | None,
             reason: str) -> CandidateDoc:
        comp = Composition(point.formula)
        failed = structure is None
        return CandidateDoc(
            candidate_id=self._candidate_id(point, k), campaign=self.campaign, condition=point.as_dict(),
            sample_index=k, grid_index=index, seed=self.seed, model=model, formula=comp.reduced_formula,
            chemsys="-".join(sorted(el.symbol for el in comp.elements)), structure=structure,
            stage=CandidateState.FAILED if failed else CandidateState.GENERATED,
            error=f"generation: {reason or 'no structure'}" if failed else None,
        )

    def _explicit(self, todo: list[tuple[int, GridPoint, int]]) -> list[CandidateDoc]:
        by_formula = {Composition(formula).reduced_formula: options for formula, options in self.structures.items()}
        docs = []
        for index, point, k in todo:
            options = by_formula.get(Composition(point.formula).reduced_formula) or []
            structure = options[k % len(options)] if options else None
            if isinstance(structure, Structure):  # jobflow hands Maker fields back deserialised
                structure = structure.as_dict()
            docs.append(self._doc(index, point, k, ModelRecord(checkpoint=EXPLICIT), structure,
                                  "no explicit structure for this formula"))
        return docs

    def _sampled(self, todo: list[tuple[int, GridPoint, int]]) -> list[CandidateDoc]:
        per_point: dict[GridPoint, list[int]] = {}
        index_of = {(point, k): index for index, point, k in todo}
        for _index, point, k in todo:
            per_point.setdefault(point, []).append(k)
        points = list(per_point)
        n = max(k for ks in per_point.values() for k in ks) + 1
        kwargs = {"method": self.method, "steps": self.steps, "samples_per_condition": n, "seed": self.seed}
        conditions = [p.sampling_condition() for p in points]
        processes = torchrun_processes(self.gpus)
        if processes > 1:
            samples = sample_with_torchrun(self.checkpoint, conditions, kwargs, processes)
        else:
            samples = _sample_here(self.checkpoint, conditions, kwargs)
        docs = []
        for i, sample in enumerate(samples):
            point, k = points[i // n], sample.sample_index
            if (point, k) in index_of:
                model = ModelRecord(checkpoint=self.checkpoint, method=sample.method, steps=sample.steps)
                docs.append(self._doc(index_of[point, k], point, k, model, sample.structure, sample.reason))
        return docs


def torchrun_processes(gpus: int) -> int:
    """Processes for DDP sampling: the stage's GPUs, when this node has that many (1 = sample in-process)."""
    import torch

    return min(gpus, torch.cuda.device_count()) if gpus > 1 and torch.cuda.is_available() else 1


def _sample_here(checkpoint: str, conditions: list[dict], kwargs: dict) -> list:
    from rich.progress import Progress

    from crystalgen.sample import sample_structures

    with Progress(transient=False) as bar:
        task = bar.add_task("generating", total=len(conditions) * kwargs["samples_per_condition"])
        return sample_structures(checkpoint, conditions, **kwargs,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))


def sample_with_torchrun(checkpoint: str, conditions: list[dict], kwargs: dict, processes: int) -> list:
    """Shard sampling over ``processes`` GPUs with torchrun (flows.generate_worker); results via the out file."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from crystalgen.sample import Condition, read_samples

    spec = Path("generate_spec.json").resolve()
    out = spec.with_name("samples.jsonl")
    spec.write_text(json.dumps({"checkpoint": checkpoint, "conditions": conditions, "out": str(out), **kwargs}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "flows.generate_worker", str(spec)]
    subprocess.run(command, check=True)
    by_key = {s.key: s for s in read_samples(out)}
    return [by_key[(Condition.model_validate(c).key, k)] for c in conditions for k in range(kwargs["samples_per_condition"])]
