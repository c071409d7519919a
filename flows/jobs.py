"""The campaign's jobflow jobs. Each one is idempotent: it reads the candidates collection first and
only does the work that is not recorded there yet, so a rerun after a crash or kill resumes.

Jobs take the campaign as a plain dict (``campaign_to_dict``) so flows serialise into FireWorks.
Stage-to-stage fan-out is dynamic (``Response(replace=...)``): how many pre-relax chunks and VASP
relaxations there are is only known once the previous stage has run.
"""

from __future__ import annotations

import logging
from typing import Any

from jobflow import Flow, Response, job
from pymatgen.core import Composition, Structure

from crystalgen.settings import get_settings
from flows import candidates as cands
from flows import energies
from flows.campaign import Campaign, parse_campaign
from flows.conditions import expand_conditions

logger = logging.getLogger(__name__)


def campaign_to_dict(campaign: Campaign) -> dict[str, Any]:
    return {**campaign.model_dump(mode="json"), "base_dir": str(campaign.base_dir)}


def campaign_from_dict(data: dict[str, Any]) -> Campaign:
    data = dict(data)
    return parse_campaign(data, base_dir=data.pop("base_dir", "."))


def _db():
    from crystalgen.db import mongo_client

    settings = get_settings()
    return mongo_client(settings)[settings.database]


def set_category(jobs, stage: str, campaign: Campaign) -> None:
    """FireWorks routing: ``_category`` (gpu/cpu) from the campaign's resources for ``stage``."""
    resources = getattr(campaign.resources, stage)
    for item in jobs if isinstance(jobs, list | tuple) else [jobs]:
        item.update_config({"manager_config": {"_category": resources.category}}, dynamic=False)


# --------------------------------------------------------------------------- references


@job(name="references")
def references_job(campaign: dict[str, Any]) -> dict[str, Any]:
    """Relax (or fetch) the reference phases once per potential; return hull formation energies per formula."""
    camp = campaign_from_dict(campaign)
    from flows.references import prerelax_references

    refs = prerelax_references(camp, _db())
    hull = {Composition(f).reduced_formula: refs.hull_formation_energy(f) for f in camp.compositions}
    return {"hull_formation_energy": hull, "label": refs.label, "energy_source": refs.energy_source, "notes": refs.notes}


# --------------------------------------------------------------------------- generate


def _model_block(camp: Campaign, explicit: bool) -> dict[str, Any]:
    if explicit:
        return {"checkpoint": "explicit-structures", "method": None, "steps": None}
    return {"checkpoint": str(camp.checkpoint_path()), "method": camp.model.method, "steps": camp.model.steps}


def _candidate_doc(camp: Campaign, point, k: int, model: dict, structure: dict | None, reason: str = "") -> dict:
    comp = Composition(point.formula)
    doc = {
        "candidate_id": cands.candidate_id(camp.name, point.as_dict(), k, camp.seed),
        "campaign": camp.name,
        "condition": point.as_dict(),
        "sample_index": k,
        "seed": camp.seed,
        "model": model,
        "formula": comp.reduced_formula,
        "chemsys": "-".join(sorted(el.symbol for el in comp.elements)),
        "structure": structure,
    }
    if structure is None:
        doc.update(stage="failed", error=f"generation: {reason or 'no structure'}")
    return doc


@job(name="generate")
def generate_job(
    campaign: dict[str, Any], hull_formation_energy: dict[str, float], structures: dict[str, list[dict]] | None = None
) -> list[str]:
    """Sample the conditions not in the database yet; return the ids of all the campaign's conditions.

    ``structures`` (reduced formula -> pymatgen dicts) replaces the model: sample k of a condition gets
    ``structures[formula][k % len]`` (tests, or seeding a campaign with known prototypes).
    """
    camp = campaign_from_dict(campaign)
    points = expand_conditions(camp, hull_formation_energy)
    coll = cands.collection()
    wanted = [(p, k) for p in points for k in range(camp.samples_per_condition)]
    ids = [cands.candidate_id(camp.name, p.as_dict(), k, camp.seed) for p, k in wanted]
    present = cands.existing_ids(coll, ids)
    todo = [(p, k) for (p, k), cid in zip(wanted, ids, strict=True) if cid not in present]
    if todo:
        docs = (_explicit_samples if structures is not None else _model_samples)(camp, todo, structures)
        inserted = cands.insert_generated(coll, docs)
        logger.info("generate: %d new candidates (%d already present)", inserted, len(present))
    return ids


def _explicit_samples(camp: Campaign, todo, structures) -> list[dict]:
    model = _model_block(camp, explicit=True)
    by_formula = {Composition(formula).reduced_formula: options for formula, options in structures.items()}
    docs = []
    for point, k in todo:
        options = by_formula.get(Composition(point.formula).reduced_formula) or []
        structure = options[k % len(options)] if options else None
        if isinstance(structure, Structure):  # jobflow hands job arguments back deserialised
            structure = structure.as_dict()
        docs.append(_candidate_doc(camp, point, k, model, structure, "no explicit structure for this formula"))
    return docs


def _model_samples(camp: Campaign, todo, _structures=None) -> list[dict]:
    model = _model_block(camp, explicit=False)
    per_point: dict = {}
    for point, k in todo:
        per_point.setdefault(point, []).append(k)
    points = list(per_point)
    n = max(k for ks in per_point.values() for k in ks) + 1
    kwargs = {"method": camp.model.method, "steps": camp.model.steps, "samples_per_condition": n, "seed": camp.seed}
    conditions = [p.sampling_condition() for p in points]
    processes = torchrun_processes(camp)
    if processes > 1:
        samples = _sample_with_torchrun(model["checkpoint"], conditions, kwargs, processes)
    else:
        samples = _sample_here(model["checkpoint"], conditions, kwargs)
    if samples:
        model = {**model, "method": samples[0].method, "steps": samples[0].steps}
    wanted = set(todo)
    docs = []
    for i, sample in enumerate(samples):
        point, k = points[i // n], sample.sample_index
        if (point, k) in wanted:
            docs.append(_candidate_doc(camp, point, k, model, sample.structure, sample.reason))
    return docs


def torchrun_processes(camp: Campaign) -> int:
    """Processes for DDP sampling: the stage's GPUs, when this node has that many (1 = sample in-process)."""
    import torch

    wanted = camp.resources.generate.gpus
    return min(wanted, torch.cuda.device_count()) if wanted > 1 and torch.cuda.is_available() else 1


def _sample_here(checkpoint: str, conditions: list[dict], kwargs: dict) -> list:
    from rich.progress import Progress

    from crystalgen.sample import sample_structures

    with Progress(transient=False) as bar:
        task = bar.add_task("generating", total=len(conditions) * kwargs["samples_per_condition"])
        return sample_structures(checkpoint, conditions, **kwargs,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))


def _sample_with_torchrun(checkpoint: str, conditions: list[dict], kwargs: dict, processes: int) -> list:
    """Shard sampling over ``processes`` GPUs with torchrun (flows.generate_worker); results via the out file."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from crystalgen.sample import read_samples

    spec = Path("generate_spec.json").resolve()
    out = spec.with_name("samples.jsonl")
    spec.write_text(json.dumps({"checkpoint": checkpoint, "conditions": conditions, "out": str(out), **kwargs}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "flows.generate_worker", str(spec)]
    subprocess.run(command, check=True)
    by_key = {(s.condition.formula, s.condition.spacegroup, round(s.condition.formation_energy, 6), s.sample_index): s
              for s in read_samples(out)}
    return [by_key[(c["formula"], c["spacegroup"], round(c["formation_energy"], 6), k)]
            for c in conditions for k in range(kwargs["samples_per_condition"])]


# --------------------------------------------------------------------------- pre-relax


def _in_campaign_order(candidate_ids: list[str], filt: dict[str, Any]) -> list[str]:
    """The ids among ``candidate_ids`` whose documents match ``filt``, in the campaign's condition order."""
    order = {cid: i for i, cid in enumerate(candidate_ids)}
    found = cands.collection().find({"candidate_id": {"$in": candidate_ids}, **filt}, {"candidate_id": 1})
    return sorted((d["candidate_id"] for d in found), key=order.__getitem__)


@job(name="prerelax stage")
def prerelax_stage(campaign: dict[str, Any], candidate_ids: list[str]) -> Response:
    """Split the candidates still at stage ``generated`` into chunks; one pre-relax job per chunk, then select."""
    camp = campaign_from_dict(campaign)
    pending = _in_campaign_order(candidate_ids, {"stage": "generated"})
    size = camp.prerelax.chunk_size
    chunks = [prerelax_chunk(campaign, pending[i : i + size]) for i in range(0, len(pending), size)]
    for i, chunk in enumerate(chunks):
        chunk.name = f"prerelax {i + 1}/{len(chunks)}"
    set_category(chunks, "prerelax", camp)
    select = select_job(campaign, candidate_ids, [c.output for c in chunks])
    set_category(select, "hull", camp)
    return Response(replace=Flow([*chunks, select], output=select.output, name="prerelax"))


@job(name="prerelax")
def prerelax_chunk(campaign: dict[str, Any], candidate_ids: list[str]) -> dict[str, int]:
    """Relax one chunk with the MLIP; record energy and MLIP e_above_hull (references from the same potential)."""
    from crystalgen.relax import relax_structures
    from flows.hull import e_above_hull
    from flows.references import prerelax_references

    camp = campaign_from_dict(campaign)
    coll = cands.collection()
    docs = cands.at_stage(coll, candidate_ids, "generated")
    if not docs:
        return {"relaxed": 0, "failed": 0}
    spec = camp.prerelax
    potential = energies.load_mlip(spec.potential)
    refs = prerelax_references(camp, _db())
    results = relax_structures(
        [Structure.from_dict(d["structure"]) for d in docs], potential, fmax=spec.fmax, max_steps=spec.steps,
        batch_size=spec.batch_size, description="pre-relaxing",
    )
    ok = [(d, r) for d, r in zip(docs, results, strict=True) if r.error is None]
    hull = e_above_hull([(d["candidate_id"], d["formula"], r.energy_per_atom) for d, r in ok], refs)
    for doc, result in zip(docs, results, strict=True):
        cid = doc["candidate_id"]
        if result.error is not None:
            cands.set_stage(coll, cid, "failed", {"error": f"prerelax: {result.error}"}, error=result.error)
            continue
        cands.set_stage(coll, cid, "prerelaxed", {
            "structure": result.structure.as_dict(),
            "prerelax": {
                "energy_per_atom": result.energy_per_atom, "e_above_hull": hull[cid].e_above_hull,
                "potential": potential.version, "converged": result.converged, "steps": result.steps,
            },
        })
    return {"relaxed": len(ok), "failed": len(docs) - len(ok)}


# --------------------------------------------------------------------------- select


@job(name="select")
def select_job(campaign: dict[str, Any], candidate_ids: list[str], chunk_summaries: list | None = None) -> Response:
    """Apply the MLIP e_above_hull window and StructureMatcher dedupe, then fan out the final relaxations."""
    camp = campaign_from_dict(campaign)
    spec = camp.prerelax
    coll = cands.collection()
    docs = list(cands.get(coll, candidate_ids).values())
    fresh = sorted((d for d in docs if d["stage"] == "prerelaxed"), key=lambda d: d["prerelax"]["e_above_hull"])
    kept = StructureIndex()
    for d in docs:
        if d["stage"] in ("selected", "relaxed", "hull"):
            kept.add(d["candidate_id"], Structure.from_dict(d["structure"]))
    for doc in fresh:
        cid, ehull = doc["candidate_id"], doc["prerelax"]["e_above_hull"]
        if ehull > spec.e_above_hull_window:
            cands.set_stage(coll, cid, "rejected", {"rejected_reason": "above MLIP e_above_hull window"},
                            reason=f"MLIP e_above_hull {ehull:.3f} > {spec.e_above_hull_window}")
            continue
        if spec.max_selected is not None and len(kept) >= spec.max_selected:
            cands.set_stage(coll, cid, "rejected", {"rejected_reason": "max_selected reached"})
            continue
        structure = Structure.from_dict(doc["structure"])
        if spec.dedupe and (twin := kept.twin_of(structure)) is not None:
            cands.set_stage(coll, cid, "rejected", {"rejected_reason": f"duplicate of {twin}"}, duplicate_of=twin)
            continue
        kept.add(cid, structure)
        cands.set_stage(coll, cid, "selected")
    to_relax = _in_campaign_order(candidate_ids, {"stage": "selected"})
    return Response(replace=relax_and_hull_flow(camp, campaign, candidate_ids, to_relax))


# --------------------------------------------------------------------------- relax


def vasp_relax_maker(camp: Campaign, name: str = "relax"):
    """atomate2 VASP RelaxMaker (custodian-run) with the campaign's INCAR.

    Paper defaults: PBE (GGA = PE; atomate2's core set would write PBEsol), ENCUT 500, EDIFF 1e-5,
    EDIFFG -0.01. The VASP command is the ``vasp_cmd`` setting where set, else atomate2's own setting.
    """
    from atomate2.vasp.jobs.core import RelaxMaker
    from atomate2.vasp.sets.core import RelaxSetGenerator

    vasp_cmd = get_settings().vasp_cmd
    return RelaxMaker(
        name=name,
        input_set_generator=RelaxSetGenerator(user_incar_settings=camp.relax.incar_settings),
        run_vasp_kwargs={"vasp_cmd": vasp_cmd} if vasp_cmd else {},
    )


def vasp_job_name(candidate_id: str) -> str:
    return f"vasp relax {candidate_id}"


def vasp_reference_job_name(phase_name: str) -> str:
    return f"vasp reference {phase_name}"


def relax_and_hull_flow(camp: Campaign, campaign: dict, candidate_ids: list[str], to_relax: list[str]) -> Flow:
    coll = cands.collection()
    jobs, outputs = [], []
    if camp.relax.engine == "mlip":
        if to_relax:
            relax = mlip_relax_job(campaign, to_relax)
            set_category(relax, "relax", camp)
            jobs.append(relax)
            outputs.append(relax.output)
    else:
        docs = cands.get(coll, to_relax)
        for cid in to_relax:
            structure = Structure.from_dict(docs[cid]["structure"])
            jobs += _vasp_with_record(camp, vasp_job_name(cid), structure, record_vasp_relax, cid)
        if camp.references.recompute:
            from flows.references import missing_vasp_references, vasp_reference_key

            for phase in missing_vasp_references(camp, _db()):
                structure = Structure.from_dict(phase["structure"])
                jobs += _vasp_with_record(camp, vasp_reference_job_name(phase["name"]), structure,
                                          record_vasp_reference_job, vasp_reference_key(camp, phase), phase["name"])
        outputs = [j.output for j in jobs[1::2]]
    hull = hull_job(campaign, candidate_ids, outputs)
    set_category(hull, "hull", camp)
    return Flow([*jobs, hull], output=hull.output, name="relax and hull")


def _vasp_with_record(camp: Campaign, name: str, structure: Structure, record, *args) -> list:
    """An atomate2 VASP relaxation plus the job that files its result (which runs even if VASP failed)."""
    from jobflow import OnMissing

    vasp = vasp_relax_maker(camp, name=name).make(structure)
    filed = record(*args, vasp.output, vasp.uuid)
    filed.config.on_missing_references = OnMissing.NONE
    set_category([vasp, filed], "relax", camp)
    return [vasp, filed]


def _task_summary(task_doc: Any) -> tuple[dict, float, dict]:
    """(final structure dict, energy per atom, INCAR as VASP read it) of an atomate2 TaskDoc or its dict."""

    def get(obj: Any, *path: str | int) -> Any:
        for key in path:
            obj = obj[key] if isinstance(obj, dict | list) else getattr(obj, key)
        return obj

    structure = get(task_doc, "output", "structure")
    structure = structure if isinstance(structure, dict) else structure.as_dict()
    return structure, float(get(task_doc, "output", "energy_per_atom")), dict(get(task_doc, "calcs_reversed", 0, "input", "incar"))


@job(name="record VASP reference")
def record_vasp_reference_job(key: str, name: str, task_doc: Any, vasp_uuid: str) -> dict[str, Any]:
    """File a reference phase's VASP energy under its cache key (nothing when VASP failed)."""
    from flows.references import record_vasp_reference

    if task_doc is None:
        return {"name": name, "ok": False}
    structure, energy, incar = _task_summary(task_doc)
    record_vasp_reference(_db(), key, name, structure, energy, energies.vasp_source(incar), vasp_uuid)
    return {"name": name, "ok": True, "energy_per_atom": energy}


@job(name="relax (MLIP stand-in)")
def mlip_relax_job(campaign: dict[str, Any], candidate_ids: list[str]) -> dict[str, int]:
    """NOT DFT: relax with the campaign's MLIP where no VASP exists; results say engine mlip, is_dft false."""
    from crystalgen.relax import relax_structures

    camp = campaign_from_dict(campaign)
    coll = cands.collection()
    docs = cands.at_stage(coll, candidate_ids, "selected")
    if not docs:
        return {"relaxed": 0, "failed": 0}
    potential = energies.load_mlip(camp.prerelax.potential)
    results = relax_structures(
        [Structure.from_dict(d["structure"]) for d in docs], potential, fmax=camp.relax.fmax,
        max_steps=camp.relax.steps, batch_size=camp.prerelax.batch_size, description="relaxing (MLIP stand-in, not DFT)",
    )
    failed = 0
    for doc, result in zip(docs, results, strict=True):
        cid = doc["candidate_id"]
        if result.error is not None:
            failed += 1
            cands.set_stage(coll, cid, "failed", {"error": f"relax: {result.error}"}, error=result.error)
            continue
        cands.set_stage(coll, cid, "relaxed", {
            "structure": result.structure.as_dict(),
            "relax": {
                "engine": "mlip", "is_dft": False, "energy_per_atom": result.energy_per_atom,
                "energy_source": energies.mlip_source(potential.name), "potential": potential.version,
                "converged": result.converged, "steps": result.steps,
            },
        })
    return {"relaxed": len(docs) - failed, "failed": failed}


@job(name="record VASP relax")
def record_vasp_relax(candidate_id: str, task_doc: Any, vasp_uuid: str) -> dict[str, Any]:
    """Copy energy, structure and INCAR of an atomate2 TaskDoc onto the candidate (failed when missing)."""
    coll = cands.collection()
    if task_doc is None:
        cands.set_stage(coll, candidate_id, "failed", {"error": "relax: VASP job failed", "relax.job_uuid": vasp_uuid})
        return {"candidate_id": candidate_id, "ok": False}
    structure, energy, incar = _task_summary(task_doc)
    cands.set_stage(coll, candidate_id, "relaxed", {
        "structure": structure,
        "relax": {
            "engine": "vasp", "is_dft": True, "energy_per_atom": energy, "energy_source": energies.vasp_source(incar),
            "job_uuid": vasp_uuid,
            "incar": {k: incar[k] for k in ("ENCUT", "EDIFF", "EDIFFG", "GGA", "ISIF", "IBRION") if k in incar},
        },
    })
    return {"candidate_id": candidate_id, "ok": True, "energy_per_atom": energy}


# --------------------------------------------------------------------------- hull


@job(name="hull")
def hull_job(campaign: dict[str, Any], candidate_ids: list[str], relax_outputs: list | None = None) -> dict[str, Any]:
    """e_above_hull, decomposition and below-hull flag for every relaxed candidate (one energy source only)."""
    from flows.hull import check_sources, e_above_hull
    from flows.references import hull_references

    camp = campaign_from_dict(campaign)
    coll = cands.collection()
    docs = cands.at_stage(coll, candidate_ids, "relaxed", "hull")
    refs = hull_references(camp, _db())
    warnings = check_sources([d["relax"]["energy_source"] for d in docs], refs, camp.references.compatibility)
    results = e_above_hull([(d["candidate_id"], d["formula"], d["relax"]["energy_per_atom"]) for d in docs], refs)
    twins = relaxed_duplicates(docs, {cid: r.e_above_hull for cid, r in results.items()})
    for doc in docs:
        res = results[doc["candidate_id"]]
        cands.set_stage(coll, doc["candidate_id"], "hull", {
            "e_above_hull": res.e_above_hull,
            "hull": {"decomposition": res.decomposition, "below_hull": res.below_hull, "chemsys": res.chemsys,
                     "reference_source": refs.label, "energy_source": refs.energy_source, "warnings": warnings,
                     "duplicate_of": twins.get(doc["candidate_id"])},
        }, e_above_hull=res.e_above_hull)
    unique = [cid for cid in results if cid not in twins]
    below = sum(results[cid].below_hull for cid in unique)
    return {"ranked": len(unique), "duplicates": len(twins), "below_hull": below, "reference_source": refs.label,
            "warnings": warnings}


class StructureIndex:
    """Structures kept so far, by reduced formula, to find a StructureMatcher twin of a new one."""

    def __init__(self) -> None:
        from pymatgen.analysis.structure_matcher import StructureMatcher

        self._matcher = StructureMatcher()
        self._by_formula: dict[str, list[tuple[str, Structure]]] = {}

    def twin_of(self, structure: Structure) -> str | None:
        same_formula = self._by_formula.get(structure.composition.reduced_formula, [])
        return next((cid for cid, other in same_formula if self._matcher.fit(other, structure)), None)

    def add(self, candidate_id: str, structure: Structure) -> None:
        self._by_formula.setdefault(structure.composition.reduced_formula, []).append((candidate_id, structure))

    def __len__(self) -> int:
        return sum(map(len, self._by_formula.values()))


def relaxed_duplicates(docs: list[dict[str, Any]], e_above_hull: dict[str, float]) -> dict[str, str]:
    """``{candidate_id: id of the better twin}`` for candidates whose final structure StructureMatcher
    finds equal to one with a lower (or equal, then smaller id) e_above_hull.

    Selection dedupes pre-relaxed structures; different ones can still relax into the same crystal,
    which the ranking should list once.
    """
    index, twins = StructureIndex(), {}
    for doc in sorted(docs, key=lambda d: (e_above_hull[d["candidate_id"]], d["candidate_id"])):
        structure = Structure.from_dict(doc["structure"])
        if (twin := index.twin_of(structure)) is None:
            index.add(doc["candidate_id"], structure)
        else:
            twins[doc["candidate_id"]] = twin
    return twins
