"""Generate stage: one structure per condition, sample index and generator (the model or a baseline)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from jobflow import job
from pymatgen.core import Composition, Structure

from flows import candidates as cands
from flows.campaign import ConditionGrid
from flows.costs import measured
from flows.conditions import GridPoint, expand_conditions
from flows.references import ReferenceSource
from flows.schemas import CandidateDoc, CandidateState, ModelRecord
from flows.stages import Stage, StageMaker

logger = logging.getLogger(__name__)

#: ``model.checkpoint`` of candidates that were given, not sampled
EXPLICIT = "explicit-structures"
#: candidates generated and inserted at a time
BATCH = 10_000


@dataclass
class GenerateMaker(StageMaker):
    """Make the campaign's candidates not in the database yet, with each of its ``generators``; the job
    returns counts only (a campaign of millions of candidates must not make one output document that large).

    ``model`` samples the checkpoint (``gpus`` > 1 shards it over that many GPUs with torchrun);
    ``random-symmetric`` and ``substitution`` are the baselines of :mod:`crystalgen.generators`
    (``sources``: substitution's parents, see :mod:`flows.known_sources`). ``structures`` (reduced formula
    -> pymatgen dicts) replaces the model: sample k of a condition gets ``structures[formula][k % len]``
    (tests, or seeding a campaign with known prototypes). With ``rescue``, near-miss structures are
    repaired (:mod:`crystalgen.rescue`) and the repair recorded; ``unfit`` (composition, space group)
    pairs are recorded as failed with the reason.
    """

    stage = Stage.GENERATE
    name: str = "generate"
    grid: ConditionGrid | None = None
    samples_per_condition: int = 1
    seed: int = 0
    generators: list[str] = field(default_factory=lambda: ["model"])
    checkpoint: str | None = None
    method: str | None = None
    steps: int | None = None
    gpus: int = 1
    structures: dict[str, list[dict]] | None = field(default=None)
    sources: list[str] = field(default_factory=lambda: ["references", "prototypes"])
    match_spacegroup: bool = True
    references: ReferenceSource | None = None
    rescue: bool = True
    unfit: list[tuple[str, int]] = field(default_factory=list)

    def make(self, hull_formation_energy):
        return self.tag(self.generate(hull_formation_energy))

    @job
    def generate(self, hull_formation_energy: dict[str, float]) -> dict[str, Any]:
        points = expand_conditions(self.grid, hull_formation_energy)
        coll = cands.collection()
        wanted = [(g, p, k) for g in self.generators for p in points for k in range(self.samples_per_condition)]
        ids = [self._candidate_id(g, p, k) for g, p, k in wanted]
        present = cands.existing_ids(coll, ids)
        new: dict[str, int] = {}
        for generator in self.generators:
            todo = [(i, p, k) for i, ((g, p, k), cid) in enumerate(zip(wanted, ids, strict=True))
                    if g == generator and cid not in present]
            new[generator] = 0
            with measured(self.campaign, self.stage, f"{self.name}:{generator}", generator=generator) as meter:
                for start in range(0, len(todo), BATCH):  # memory stays flat for any grid size
                    with meter.science():
                        docs = self._made(generator, todo[start : start + BATCH])
                    new[generator] += cands.insert_generated(coll, docs)
        logger.info("generate: %s new candidates (%d already present)", new, len(present))
        return {"candidates": len(ids), "new": sum(new.values()), "present": len(present), "new_by_generator": new}

    def _candidate_id(self, generator: str, point: GridPoint, k: int) -> str:
        return cands.candidate_id(self.campaign, point.as_dict(), k, self.seed, generator)

    def _made(self, generator: str, todo: list[tuple[int, GridPoint, int]]) -> list[CandidateDoc]:
        """The documents of ``todo`` from ``generator``; unfit pairs fail without asking it."""
        unfit = {(Composition(f).reduced_formula, int(g)) for f, g in self.unfit}
        fit = []
        docs = []
        for index, point, k in todo:
            if (Composition(point.formula).reduced_formula, point.spacegroup) in unfit:
                reason = (f"{point.formula} cannot sit on the Wyckoff positions of space group {point.spacegroup} "
                          "(incompatible_spacegroups: record)")
                docs.append(self._doc(generator, index, point, k, ModelRecord(checkpoint="", method=generator),
                                      None, reason))
            else:
                fit.append((index, point, k))
        if not fit:
            return docs
        if generator == "model":
            return docs + (self._explicit(fit) if self.structures is not None else self._sampled(fit))
        return docs + self._baseline(generator, fit)

    def _doc(self, generator: str, index: int, point: GridPoint, k: int, model: ModelRecord, structure: dict | None,
             reason: str, rejected: dict | None = None) -> CandidateDoc:
        comp = Composition(point.formula)
        structure, repair, reason = self._rescued(structure, rejected, reason)
        failed = structure is None
        return CandidateDoc(
            candidate_id=self._candidate_id(generator, point, k), campaign=self.campaign, condition=point.as_dict(),
            sample_index=k, grid_index=index, seed=self.seed, generator=generator, model=model,
            formula=comp.reduced_formula, chemsys="-".join(sorted(el.symbol for el in comp.elements)),
            structure=structure, rescue=repair, stage=CandidateState.FAILED if failed else CandidateState.GENERATED,
            error=f"generation: {reason or 'no structure'}" if failed else None,
        )

    def _rescued(self, structure: dict | None, rejected: dict | None, reason: str) -> tuple[dict | None, str | None, str]:
        """(structure to pre-relax, what the repair did, failure reason): valid structures pass untouched,
        a near miss is repaired within :mod:`crystalgen.rescue`'s bounds, else it goes on as it was."""
        damaged = structure or rejected
        if not self.rescue or damaged is None:
            return structure, None, reason
        from crystalgen.rescue import rescue

        result = rescue(Structure.from_dict(damaged))
        if result.rescued:
            return result.structure.as_dict(), result.description, ""
        if structure is None:
            return None, None, f"{reason}; rescue: {result.reason}"
        return structure, None, reason

    def _explicit(self, todo: list[tuple[int, GridPoint, int]]) -> list[CandidateDoc]:
        by_formula = {Composition(formula).reduced_formula: options for formula, options in self.structures.items()}
        docs = []
        for index, point, k in todo:
            options = by_formula.get(Composition(point.formula).reduced_formula) or []
            structure = options[k % len(options)] if options else None
            if isinstance(structure, Structure):  # jobflow hands Maker fields back deserialised
                structure = structure.as_dict()
            docs.append(self._doc("model", index, point, k, ModelRecord(checkpoint=EXPLICIT), structure,
                                  "no explicit structure for this formula"))
        return docs

    def _sampled(self, todo: list[tuple[int, GridPoint, int]]) -> list[CandidateDoc]:
        points, n = self._per_point(todo)
        kwargs = {"method": self.method, "steps": self.steps, "samples_per_condition": n, "seed": self.seed}
        conditions = [p.sampling_condition() for p in points]
        processes = torchrun_processes(self.gpus)
        if processes > 1:
            made = sample_with_torchrun(self.checkpoint, conditions, kwargs, processes)
        else:
            made = _sample_here(self.checkpoint, conditions, kwargs)
        return self._docs("model", todo, points, n, made,
                          lambda s: ModelRecord(checkpoint=self.checkpoint, method=s.method, steps=s.steps,
                                                symmetry=s.symmetry, symmetry_rebuilt=s.symmetry_rebuilt or None))

    def _baseline(self, generator: str, todo: list[tuple[int, GridPoint, int]]) -> list[CandidateDoc]:
        from crystalgen.generators import generate

        from flows.known_sources import substitution_sources

        points, n = self._per_point(todo)
        sources = substitution_sources(self.sources, self.references, cands.database()) if generator == "substitution" else ()
        made = generate(generator, [p.sampling_condition() for p in points], n, self.seed, sources=sources,
                        match_spacegroup=self.match_spacegroup)
        return self._docs(generator, todo, points, n, made,
                          lambda s: ModelRecord(checkpoint="", method=generator, origin=s.origin or None))

    @staticmethod
    def _per_point(todo: list[tuple[int, GridPoint, int]]) -> tuple[list[GridPoint], int]:
        """The distinct points of ``todo`` in order, and how many samples each must be asked for."""
        points = list(dict.fromkeys(point for _, point, _ in todo))
        return points, max(k for _, _, k in todo) + 1

    def _docs(self, generator: str, todo, points: list[GridPoint], n: int, made: list, record) -> list[CandidateDoc]:
        """Documents for the wanted (point, k) of ``made`` (``n`` samples per point, in point order)."""
        index_of = {(point, k): index for index, point, k in todo}
        docs = []
        for i, sample in enumerate(made):
            point, k = points[i // n], sample.sample_index
            if (point, k) in index_of:
                docs.append(self._doc(generator, index_of[point, k], point, k, record(sample), sample.structure,
                                      sample.reason, getattr(sample, "rejected_structure", None)))
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
