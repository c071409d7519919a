"""Running a campaign flow in this process (jobflow ``run_locally``) without burying its failures.

jobflow catches an exception in a job, logs it with the traceback and goes on with the jobs that do
not depend on it, so a run always "finishes". Here its log goes in full to a file, the terminal gets
one line per job, and every failed job comes back with its stage (from the job's tag) and the last
line of its traceback, so the command can exit non-zero with one line per failed stage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flows.stages import STAGE_KEY

FAILED = " failed with exception:\n"  # how jobflow's local manager logs a job that raised


@dataclass(frozen=True)
class JobFailure:
    stage: str
    job: str
    error: str  # the exception line of the traceback


class _Console(logging.Formatter):
    """One line per record: a traceback shows as its last line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if FAILED in message:
            name, trace = message.split(FAILED, 1)
            message = f"{name} FAILED: {trace.strip().splitlines()[-1]}"
        return f"{self.formatTime(record)} {message}"


class _Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.failed: list[tuple[str, str]] = []  # (job name, exception line)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if FAILED in message:
            name, trace = message.split(FAILED, 1)
            self.failed.append((name, trace.strip().splitlines()[-1]))


def _jobs(flow) -> Iterator:
    for job, _parents in flow.iterflow():
        yield job


def _all_jobs(flow, responses: dict) -> list:
    """The flow's jobs and every job its jobs created at run time."""
    jobs = list(_jobs(flow))
    for by_index in responses.values():
        for response in by_index.values():
            for created in (response.replace, response.addition, response.detour):
                if created is not None:
                    jobs += _jobs(created)
    return jobs


def run_flow(flow, store, log_file: Path) -> list[JobFailure]:
    """Run ``flow`` here; returns the jobs that failed (jobs that only waited on them are not listed)."""
    from jobflow import run_locally

    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("jobflow")
    full = logging.FileHandler(log_file)
    full.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler()
    console.setFormatter(_Console())
    failures = _Failures()
    handlers = (full, console, failures)
    level = logger.level
    logger.setLevel(logging.INFO)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        responses = run_locally(flow, store=store, log=False)
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(level)
        full.close()
    stages = {job.name: job.metadata.get(STAGE_KEY, "untagged") for job in _all_jobs(flow, responses)}
    return [JobFailure(stages.get(name, "untagged"), name, error) for name, error in failures.failed]


def stage_summaries(failures: list[JobFailure]) -> list[str]:
    """One line per failed stage: how many of its jobs failed, and the first error."""
    by_stage: dict[str, list[JobFailure]] = {}
    for failure in failures:
        by_stage.setdefault(failure.stage, []).append(failure)
    lines = []
    for stage, items in by_stage.items():
        names = ", ".join(f.job for f in items[:3]) + (" ..." if len(items) > 3 else "")
        lines.append(f"stage {stage}: {len(items)} job(s) failed ({names}): {items[0].error}")
    return lines
