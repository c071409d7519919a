"""Relax stage: atomate2's VASP RelaxMaker per selected candidate, or the MLIP stand-in where no VASP exists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobflow import OnMissing, job
from pymatgen.core import Structure

from flows import candidates as cands
from flows import energies
from flows.costs import measured
from flows.energies import MlipSettings
from flows.references import ReferenceSource, missing_vasp_references, record_vasp_reference, vasp_reference_key
from flows.schemas import CandidateDoc, CandidateState, RelaxRecord
from flows.stages import Stage, StageMaker

#: INCAR keys copied onto the candidate's relax record
RECORDED_INCAR = ("ENCUT", "EDIFF", "EDIFFG", "GGA", "ISIF", "IBRION")


def vasp_job_name(candidate_id: str) -> str:
    return f"vasp relax {candidate_id}"


def vasp_reference_job_name(phase_name: str) -> str:
    return f"vasp reference {phase_name}"


def atomate2_relax_maker(incar: dict[str, Any], vasp_cmd: str | None = None):
    """atomate2's VASP RelaxMaker (custodian-run) with ``incar`` as user INCAR settings.

    ``vasp_cmd`` empty: atomate2's own setting (``ATOMATE2_VASP_CMD``) on the machine the job runs on.
    """
    from atomate2.vasp.jobs.core import RelaxMaker
    from atomate2.vasp.sets.core import RelaxSetGenerator

    return RelaxMaker(input_set_generator=RelaxSetGenerator(user_incar_settings=dict(incar)),
                      run_vasp_kwargs={"vasp_cmd": vasp_cmd} if vasp_cmd else {})


@dataclass
class VaspRelaxMaker(StageMaker):
    """One atomate2 VASP relaxation per candidate, plus a job that files its result on the candidate.

    With ``references`` set (``references.recompute``), the reference phases without an energy for
    this INCAR are relaxed the same way, so the hull compares like with like.
    """

    stage = Stage.RELAX
    name: str = "vasp relax"
    vasp: Any = None  # atomate2.vasp.jobs.core.RelaxMaker
    references: ReferenceSource | None = None

    @property
    def incar(self) -> dict[str, Any]:
        return dict(self.vasp.input_set_generator.user_incar_settings)

    def relax_jobs(self, docs: list[CandidateDoc]) -> tuple[list, list]:
        """(jobs, outputs the hull waits for) for the selected candidates ``docs``."""
        jobs = []
        for doc in docs:
            jobs += self._relax_and_file(vasp_job_name(doc.candidate_id), Structure.from_dict(doc.structure),
                                         self.record, [doc.candidate_id], doc.candidate_id)
        if self.references is not None:
            for phase in missing_vasp_references(self.references, self.incar, cands.database()):
                key = vasp_reference_key(self.incar, phase)
                jobs += self._relax_and_file(vasp_reference_job_name(phase["name"]), Structure.from_dict(phase["structure"]),
                                             self.record_reference, [], key, phase["name"])
        return jobs, [j.output for j in jobs[1::2]]

    def _relax_and_file(self, name: str, structure: Structure, record, candidate_ids: list[str], *args) -> list:
        vasp = self.vasp.make(structure)
        vasp.name = name
        filed = record(*args, vasp.output, vasp.uuid)
        filed.name = f"record {name}"
        filed.config.on_missing_references = OnMissing.NONE  # runs when VASP failed, to record that
        return [self.tag(vasp, candidate_ids), self.tag(filed, candidate_ids)]

    @job
    def record(self, candidate_id: str, task_doc: Any, vasp_uuid: str) -> dict[str, Any]:
        """Copy energy, structure and INCAR of an atomate2 TaskDoc onto the candidate (failed when missing)."""
        coll = cands.collection()
        if task_doc is None:
            cands.set_stage(coll, candidate_id, CandidateState.FAILED,
                            {"error": "relax: VASP job failed", "relax": RelaxRecord(engine="vasp", job_uuid=vasp_uuid)})
            return {"candidate_id": candidate_id, "ok": False}
        structure, energy, incar = task_summary(task_doc)
        record_vasp_cost(self.campaign, vasp_job_name(candidate_id), [candidate_id], task_doc)
        record = RelaxRecord(engine="vasp", is_dft=True, energy_per_atom=energy, energy_source=energies.vasp_source(incar),
                             job_uuid=vasp_uuid, incar={k: incar[k] for k in RECORDED_INCAR if k in incar})
        cands.set_stage(coll, candidate_id, CandidateState.RELAXED, {"structure": structure, "relax": record})
        return {"candidate_id": candidate_id, "ok": True, "energy_per_atom": energy}

    @job
    def record_reference(self, key: str, name: str, task_doc: Any, vasp_uuid: str) -> dict[str, Any]:
        """File a reference phase's VASP energy under its cache key (nothing when VASP failed)."""
        if task_doc is None:
            return {"name": name, "ok": False}
        structure, energy, incar = task_summary(task_doc)
        record_vasp_reference(cands.database(), key, name, structure, energy, energies.vasp_source(incar), vasp_uuid)
        return {"name": name, "ok": True, "energy_per_atom": energy}


def record_vasp_cost(campaign: str, job: str, candidate_ids: list[str], task_doc: Any) -> None:
    """The VASP run's own timing (its OUTCAR's run statistics, as atomate2 parsed them) as the relax stage's cost."""
    from flows.costs import COLLECTION
    from flows.schemas import CostDoc

    stats = _get(task_doc, "run_stats") or {}
    seconds = sum(float(_get(s, "elapsed_time") or 0.0) for s in (stats.values() if isinstance(stats, dict) else []))
    cpu = sum(float(_get(s, "total_time") or 0.0) for s in (stats.values() if isinstance(stats, dict) else []))
    doc = CostDoc(campaign=campaign, stage=Stage.RELAX.value, job=job, candidate_ids=candidate_ids, wall_s=seconds,
                  cpu_s=cpu, science_s=seconds)
    cands.database()[COLLECTION].insert_one(doc.model_dump())


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def task_summary(task_doc: Any) -> tuple[dict, float, dict]:
    """(final structure dict, energy per atom, INCAR as VASP read it) of an atomate2 TaskDoc or its dict."""

    def get(obj: Any, *path: str | int) -> Any:
        for key in path:
            obj = obj[key] if isinstance(obj, dict | list) else getattr(obj, key)
        return obj

    structure = get(task_doc, "output", "structure")
    structure = structure if isinstance(structure, dict) else structure.as_dict()
    incar = dict(get(task_doc, "calcs_reversed", 0, "input", "incar"))
    return structure, float(get(task_doc, "output", "energy_per_atom")), incar


@dataclass
class MlipRelaxMaker(StageMaker):
    """NOT DFT: relax with a potential where no VASP exists; results say ``engine: mlip``, ``is_dft: false``."""

    stage = Stage.RELAX
    name: str = "relax (MLIP stand-in)"
    mlip: MlipSettings | None = None

    def relax_jobs(self, docs: list[CandidateDoc]) -> tuple[list, list]:
        if not docs:
            return [], []
        ids = [d.candidate_id for d in docs]
        relax = self.tag(self.relax(ids), ids)
        return [relax], [relax.output]

    @job
    def relax(self, candidate_ids: list[str]) -> dict[str, int]:
        with measured(self.campaign, self.stage, self.name, candidate_ids) as meter:
            return cands.relax_and_record(candidate_ids, CandidateState.SELECTED, self.mlip, "relax",
                                          CandidateState.RELAXED, self._records, meter)

    def _records(self, _docs, _results):
        potential = self.mlip.loaded()
        source = energies.mlip_source(potential.name)

        def record(_doc, result):
            return {"relax": RelaxRecord(engine="mlip", is_dft=False, energy_per_atom=result.energy_per_atom,
                                         energy_source=source, potential=potential.version,
                                         converged=result.converged, steps=result.steps)}

        return record
