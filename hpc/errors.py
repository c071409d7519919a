"""Why a VASP firework failed, read from what FireWorks and custodian leave behind, and its fix.

Evidence, strongest first: the ``custodian.json`` in the launch directory (the error tags of every
correction custodian tried: ``zbrent``, ``brmix``, ``Unconverged``, ...), the exception FireWorks
stored in the launch (``action.stored_data._exception``: custodian's ``MaxCorrections...`` or
``NonRecoverableError`` message, a Python ``MemoryError``, ...), and the tail of the scheduler and
VASP output files in the launch directory (``DUE TO TIME LIMIT``, ``oom-kill``, ``ZBRENT: fatal``).
A run that stopped sending heartbeats without leaving any of these is ``lost``.

| class       | typical cause                                  | fix applied by ``crystalgen resubmit``                       |
|-------------|------------------------------------------------|---------------------------------------------------------------|
| walltime    | the allocation ended mid-relaxation            | restart from CONTCAR, ``_queueadapter.walltime`` x2             |
| lost        | node died / job killed, no heartbeat           | restart from CONTCAR, ``_queueadapter.walltime`` x2             |
| memory      | out of memory on the node                      | ``_queueadapter.mem`` x2 (else ``nodes`` x2), KPAR=1            |
| convergence | electronic SCF did not converge                | restart from CONTCAR, ALGO=All, NELM=200 (then ALGO=Damped)     |
| zbrent      | ZBRENT bracketing failure in the line search   | restart from CONTCAR, IBRION=1, POTIM=0.25, EDIFF<=1e-6        |
| brmix       | charge-density mixing (BRMIX) failure          | restart from CONTCAR, IMIX=1 (Kerker), AMIX=0.1, BMIX=0.01      |
| unknown     | anything else                                  | rerun unchanged (transient failures are common on clusters)    |
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from monty.io import zopen
from monty.os.path import zpath


class ErrorClass(str, Enum):
    WALLTIME = "walltime"
    LOST = "lost"
    MEMORY = "memory"
    CONVERGENCE = "convergence"
    ZBRENT = "zbrent"
    BRMIX = "brmix"
    UNKNOWN = "unknown"


# custodian error tags (VaspErrorHandler & co.) -> class; tags are compared lower-cased.
CUSTODIAN_TAGS: dict[str, ErrorClass] = {
    "zbrent": ErrorClass.ZBRENT,
    "potim": ErrorClass.ZBRENT,
    "brions": ErrorClass.ZBRENT,
    "brmix": ErrorClass.BRMIX,
    "unconverged": ErrorClass.CONVERGENCE,
    "non-converging job": ErrorClass.CONVERGENCE,
    "edddav": ErrorClass.CONVERGENCE,
    "eddrmm": ErrorClass.CONVERGENCE,
    "zheev": ErrorClass.CONVERGENCE,
    "subspacematrix": ErrorClass.CONVERGENCE,
    "out_of_memory": ErrorClass.MEMORY,
    "kill": ErrorClass.MEMORY,
    "walltime": ErrorClass.WALLTIME,
    "frozen job": ErrorClass.LOST,
}

# Text patterns, checked in order; the first class with a match wins.
TEXT_PATTERNS: tuple[tuple[ErrorClass, re.Pattern], ...] = (
    (ErrorClass.WALLTIME, re.compile(r"DUE TO TIME LIMIT|walltime|TIME LIMIT|WalltimeHandler", re.I)),
    (ErrorClass.MEMORY, re.compile(r"oom[-_ ]kill|out of memory|MemoryError|cannot allocate memory|"
                                   r"insufficient virtual memory|exceeded memory", re.I)),
    (ErrorClass.ZBRENT, re.compile(r"ZBRENT|POTIM|BRIONS problems")),
    (ErrorClass.BRMIX, re.compile(r"BRMIX")),
    (ErrorClass.CONVERGENCE, re.compile(r"Unconverged|not converge|EDDDAV|EDDRMM|ZHEGV|ZHEEV|SUBSPACEMATRIX", re.I)),
)

OUTPUT_FILES = ("custodian.json", "vasp.out", "std_err.txt", "OUTCAR", "FW_job.error", "FW_job.out")
# The scheduler's own output (`<job_name>-<id>.error` from our templates, FW_job.* from FireWorks')
# lands in the queue launcher directory: the launch directory itself or its parent with rapidfire.
SCHEDULER_GLOBS = ("*.error", "*.err", "FW_job.out")
TAIL_BYTES = 20_000


@dataclass
class Diagnosis:
    """The class of a failure and the evidence it rests on (shown in the resubmit plan)."""

    error_class: ErrorClass
    evidence: str
    custodian_errors: list[str] = field(default_factory=list)


def custodian_errors(launch_dir: str | Path | None) -> list[str]:
    """Every error tag custodian recorded in ``custodian.json`` of a launch directory, in order."""
    if not launch_dir:
        return []
    path = Path(zpath(str(Path(launch_dir) / "custodian.json")))
    if not path.is_file():
        return []
    try:
        with zopen(path, "rt") as handle:
            runs = json.load(handle)
    except (OSError, ValueError):
        return []
    tags = []
    for run in runs if isinstance(runs, list) else [runs]:
        for correction in run.get("corrections", []) or []:
            tags.extend(str(tag) for tag in correction.get("errors", []) or [])
        if run.get("nonzero_return_code"):
            tags.append("nonzero_return_code")
    return tags


def _tail(path: Path) -> str:
    path = Path(zpath(str(path)))
    if not path.is_file():
        return ""
    try:
        with zopen(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return ""
    return data[-TAIL_BYTES:].decode("utf-8", errors="replace")


def _output_files(launch_dir: Path) -> list[Path]:
    paths = [launch_dir / name for name in OUTPUT_FILES[1:]]
    for folder in (launch_dir, launch_dir.parent):
        if folder.is_dir():
            for pattern in SCHEDULER_GLOBS:
                paths += sorted(folder.glob(pattern))
    return list(dict.fromkeys(paths))


def exception_text(launch: dict) -> str:
    """The stack trace and details FireWorks stored when the firework raised."""
    stored = ((launch or {}).get("action") or {}).get("stored_data") or {}
    exc = stored.get("_exception") or {}
    parts = [str(exc.get("_stacktrace") or ""), json.dumps(exc.get("_details"), default=str) if exc.get("_details") else ""]
    return "\n".join(part for part in parts if part)


def _from_tags(tags: list[str]) -> ErrorClass | None:
    for tag in reversed(tags):  # the last correction is the one custodian gave up on
        cls = CUSTODIAN_TAGS.get(tag.lower())
        if cls is not None:
            return cls
    return None


def _from_text(text: str) -> tuple[ErrorClass, str] | None:
    for cls, pattern in TEXT_PATTERNS:
        match = pattern.search(text)
        if match:
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.end())
            return cls, text[start: end if end != -1 else None].strip()[:200]
    return None


def classify(launch: dict | None, lost: bool = False) -> Diagnosis:
    """Classify the failure of one launch (a document of the FireWorks ``launches`` collection)."""
    launch = launch or {}
    launch_dir = launch.get("launch_dir")
    tags = custodian_errors(launch_dir)
    tagged = _from_tags(tags)
    if tagged is not None:
        return Diagnosis(tagged, f"custodian.json errors: {', '.join(tags)}", tags)
    found = _from_text(exception_text(launch))
    if found is None and launch_dir:
        for path in _output_files(Path(launch_dir)):
            found = _from_text(_tail(path))
            if found is not None:
                found = (found[0], f"{path.name}: {found[1]}")
                break
    if found is not None:
        return Diagnosis(found[0], found[1], tags)
    if lost:
        return Diagnosis(ErrorClass.LOST, "no heartbeat and no error recorded (node lost or job killed)", tags)
    first_line = exception_text(launch).strip().splitlines()[-1:] or ["no error recorded"]
    return Diagnosis(ErrorClass.UNKNOWN, first_line[0][:200], tags)
