"""Find a campaign's failed and lost VASP fireworks, fix what made them fail, and rerun them.

The fix is applied to the firework itself, the way an atomate2 user would with powerups: the
job stored in ``spec._tasks.0.job`` is loaded, its maker's ``input_set_generator``
``user_incar_settings`` updated (``Job.update_maker_kwargs``), its structure argument replaced
by the CONTCAR of the failed launch when a restart makes sense, and the queue request raised
through ``spec._queueadapter``. Then ``LaunchPad.rerun_fw``. Every rerun increments
``spec.crystalgen_retries`` and is logged in the candidate's ``history``; fireworks that reached
``max_retries`` are left alone and reported. With ``dry_run`` nothing is written.

See ``hpc.errors`` for the classes and their fixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from monty.os.path import zpath

from flows.stages import CAMPAIGN_KEY, CANDIDATES_KEY, STAGE_KEY, Stage
from hpc.routing import RETRIES_KEY
from hpc.errors import Diagnosis, ErrorClass, classify

DEFAULT_MAX_RETRIES = 3
DEFAULT_WALLTIME = "24:00:00"
LOST_AFTER_S = 4 * 3600  # FireWorks' own default for a run without heartbeat
RESTART_CLASSES = {ErrorClass.WALLTIME, ErrorClass.LOST, ErrorClass.CONVERGENCE, ErrorClass.ZBRENT, ErrorClass.BRMIX}


@dataclass
class Fix:
    """What will be changed before the rerun."""

    incar: dict = field(default_factory=dict)
    queueadapter: dict = field(default_factory=dict)
    restart_from_contcar: bool = False

    def describe(self) -> str:
        parts = []
        if self.restart_from_contcar:
            parts.append("restart from CONTCAR")
        parts += [f"{key}={value}" for key, value in self.incar.items()]
        parts += [f"queue {key}={value}" for key, value in self.queueadapter.items()]
        return ", ".join(parts) or "rerun unchanged"


@dataclass
class PlannedRerun:
    fw_id: int
    name: str
    state: str
    candidate_id: str | None
    retries: int
    diagnosis: Diagnosis
    fix: Fix
    skipped: str | None = None  # why it is left alone (max retries), else None
    contcar: str | None = None  # CONTCAR the restart starts from


def _scale_walltime(walltime: str, factor: float = 2.0) -> str:
    parts = [int(p) for p in re.split(r"[-:]", walltime)]
    days = parts[0] if len(parts) == 4 else 0
    h, m, s = parts[-3:]
    total = int((((days * 24 + h) * 60 + m) * 60 + s) * factor)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _scale_memory(mem: str | int, factor: int = 2) -> str:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(mem))
    if not match:
        raise ValueError(f"cannot read memory request {mem!r}")
    value = float(match.group(1)) * factor
    return f"{value:g}{match.group(2)}"


def _current_incar(job) -> dict:
    maker = getattr(job.function, "__self__", None)
    generator = getattr(maker, "input_set_generator", None)
    return dict(getattr(generator, "user_incar_settings", None) or {})


def plan_fix(diagnosis: Diagnosis, spec: dict, current_incar: dict) -> Fix:
    """The documented fix for a failure class (see the table in ``hpc.errors``)."""
    cls = diagnosis.error_class
    queue = dict(spec.get("_queueadapter") or {})
    fix = Fix(restart_from_contcar=cls in RESTART_CLASSES)
    if cls in (ErrorClass.WALLTIME, ErrorClass.LOST):
        fix.queueadapter["walltime"] = _scale_walltime(queue.get("walltime") or DEFAULT_WALLTIME)
    elif cls is ErrorClass.MEMORY:
        if queue.get("mem"):
            fix.queueadapter["mem"] = _scale_memory(queue["mem"])
        else:
            fix.queueadapter["nodes"] = int(queue.get("nodes") or 1) * 2
        fix.incar["KPAR"] = 1
    elif cls is ErrorClass.CONVERGENCE:
        if str(current_incar.get("ALGO", "")).lower() == "all":
            fix.incar.update(ALGO="Damped", TIME=0.5, NELM=200)
        else:
            fix.incar.update(ALGO="All", NELM=200)
    elif cls is ErrorClass.ZBRENT:
        fix.incar.update(IBRION=1, POTIM=0.25, EDIFF=min(float(current_incar.get("EDIFF", 1e-5)), 1e-6))
    elif cls is ErrorClass.BRMIX:
        fix.incar.update(IMIX=1, AMIX=0.1, BMIX=0.01)
    return fix


def _last_launch(lpad, fw_doc: dict) -> dict | None:
    ids = fw_doc.get("launches") or []
    if not ids:
        return None
    return lpad.launches.find_one({"launch_id": ids[-1]})


def _contcar(launch: dict | None) -> Path | None:
    launch_dir = (launch or {}).get("launch_dir")
    if not launch_dir:
        return None
    path = Path(zpath(str(Path(launch_dir) / "CONTCAR")))
    return path if path.is_file() and path.stat().st_size > 0 else None


def _load_job(spec: dict):
    from jobflow import Job

    return Job.from_dict(spec["_tasks"][0]["job"])


def _candidate_of(fw_doc: dict) -> str | None:
    """The candidate a relax firework works on, from its stage tag (reference-phase relaxations have none)."""
    ids = fw_doc["spec"].get(CANDIDATES_KEY) or []
    return ids[0] if len(ids) == 1 else None


def find_failed(lpad, campaign: str, stage: Stage = Stage.RELAX, lost_after_s: float = LOST_AFTER_S):
    """(FIZZLED fw docs, lost fw ids) of ``campaign``'s ``stage`` fireworks; changes nothing."""
    query = {f"spec.{CAMPAIGN_KEY}": campaign, f"spec.{STAGE_KEY}": Stage(stage).value}
    _, lost_fw_ids, _ = lpad.detect_lostruns(expiration_secs=lost_after_s, query=query)
    fizzled = list(lpad.fireworks.find({**query, "state": "FIZZLED"}))
    return fizzled, sorted(set(lost_fw_ids))


def plan(lpad, campaign: str, max_retries: int = DEFAULT_MAX_RETRIES, lost_after_s: float = LOST_AFTER_S,
         stage: Stage = Stage.RELAX) -> list[PlannedRerun]:
    """Diagnose every failed/lost firework of the campaign and decide its fix. Read-only."""
    fizzled, lost_ids = find_failed(lpad, campaign, stage, lost_after_s)
    docs = [(doc, False) for doc in fizzled]
    docs += [(doc, True) for doc in lpad.fireworks.find({"fw_id": {"$in": lost_ids}})]
    plans = []
    for doc, lost in sorted(docs, key=lambda item: item[0]["fw_id"]):
        spec = doc["spec"]
        launch = _last_launch(lpad, doc)
        diagnosis = classify(launch, lost=lost)
        try:
            job, load_error = _load_job(spec), None
        except Exception as exc:  # e.g. the job's module is not importable here
            job, load_error = None, f"{exc.__class__.__name__}: {exc}"
        fix = plan_fix(diagnosis, spec, _current_incar(job) if job is not None else {})
        contcar = _contcar(launch) if fix.restart_from_contcar else None
        if contcar is None:
            fix.restart_from_contcar = False
        retries = int(spec.get(RETRIES_KEY, 0))
        skipped = None
        if retries >= max_retries:
            skipped = f"reached max retries ({retries}/{max_retries})"
        elif load_error and (fix.incar or fix.restart_from_contcar):
            skipped = f"cannot load its job to apply the fix ({load_error[:120]})"
        plans.append(PlannedRerun(doc["fw_id"], doc.get("name", ""), doc["state"], _candidate_of(doc),
                                  retries, diagnosis, fix, skipped, str(contcar) if contcar else None))
    return plans


def _updated_job(spec: dict, planned: PlannedRerun) -> dict | None:
    """The firework's job with the INCAR changes and restart structure applied (None: unchanged)."""
    if not planned.fix.incar and not planned.contcar:
        return None
    from jobflow import OutputReference
    from pymatgen.core import Structure

    job = _load_job(spec)
    if planned.fix.incar:
        maker = getattr(job.function, "__self__", None)
        if getattr(maker, "input_set_generator", None) is not None:
            job.update_maker_kwargs(
                {"_set": {f"input_set_generator->user_incar_settings->{k}": v for k, v in planned.fix.incar.items()}},
                dict_mod=True,
            )
    if planned.contcar and job.function_args and isinstance(job.function_args[0], Structure | OutputReference | dict):
        job.function_args = (Structure.from_file(planned.contcar), *job.function_args[1:])
    return job.as_dict()


def _record_history(campaign: str, planned: PlannedRerun) -> None:
    """Move the candidate back to ``selected`` (its relaxation runs again) and log why in ``history``."""
    if not planned.candidate_id:
        return
    from flows import candidates

    resubmission = {"fw_id": planned.fw_id, "error_class": planned.diagnosis.error_class.value,
                    "evidence": planned.diagnosis.evidence, "fix": planned.fix.describe(), "retry": planned.retries + 1}
    try:
        candidates.set_stage(candidates.collection(), planned.candidate_id, "selected", resubmission=resubmission)
    except KeyError:  # the firework names a candidate this database does not hold: nothing to log on
        pass


def apply(lpad, campaign: str, plans: list[PlannedRerun], lost_after_s: float = LOST_AFTER_S) -> list[int]:
    """Carry out the plan: fix each firework's spec and rerun it. Returns the rerun fw ids."""
    lost = [p.fw_id for p in plans if p.state == "RUNNING" and not p.skipped]
    if lost:  # a lost run is still RUNNING in the database: fizzle it so its spec may change
        lpad.detect_lostruns(expiration_secs=lost_after_s, fizzle=True, query={"fw_id": {"$in": lost}})
    rerun = []
    for planned in plans:
        if planned.skipped:
            continue
        spec = lpad.fireworks.find_one({"fw_id": planned.fw_id}, {"spec": 1})["spec"]
        update: dict = {RETRIES_KEY: planned.retries + 1}
        job = _updated_job(spec, planned)
        if job is not None:
            update["_tasks.0.job"] = job
        if planned.fix.queueadapter:
            update["_queueadapter"] = {**(spec.get("_queueadapter") or {}), **planned.fix.queueadapter}
        lpad.update_spec([planned.fw_id], update)
        lpad.rerun_fw(planned.fw_id)
        _record_history(campaign, planned)
        rerun.append(planned.fw_id)
    return rerun
