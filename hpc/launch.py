"""``crystalgen hpc launch DIR``: keep at most ``max_queued`` jobs of one worker directory in the queue.

FireWorks' ``qlaunch --maxjobs_queue`` counts every job of the user, so a GPU worker, a CPU worker
and anything else the user runs share one cap (and a failing ``squeue`` is retried for hours).
This counts only the directory's own jobs, by the name ``crystalgen hpc init`` gives them
(``crystalgen-<category>``: ``squeue -h -u USER -n NAME``, PBS ``qselect -u USER -N NAME``), and
submits at most the cap minus that, and no more jobs than the category's READY fireworks need:
one per ``runs_per_job`` fireworks (reservation mode: one per firework). Each job is submitted by
FireWorks' own queue launcher (``launch_rocket_to_queue``, the call ``qlaunch rapidfire`` loops
over) with the directory's qadapter, into the newest ``block_*`` folder as qlaunch would; calling
it directly gives each job's id or failure, which ``rapidfire`` only logs. Suitable for cron: one
line on what it did, exit 1 with one message when the scheduler or the database cannot be used.
"""

from __future__ import annotations

import ast
import getpass
import io
import logging
import math
import shutil
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hpc.scheduler_check import NAMES, SchedulerCheckError, check_config_dir, first_line, load_qadapter, run_command
from hpc.templates import LAUNCH_FILE

QADAPTERS = {False: "my_qadapter.yaml", True: "my_qadapter_reserve.yaml"}
NJOBS_BLOCK = 500  # qlaunch's default: a new block_* folder after this many launcher_* folders
SUBMIT = {"SLURM": "sbatch", "PBS": "qsub"}


class LaunchError(RuntimeError):
    """Nothing (more) could be submitted; the message says why."""


@dataclass
class LaunchReport:
    """What one ``hpc launch`` saw and did."""

    job_name: str
    category: str
    queued: int
    max_queued: int
    ready: int
    per_job: int
    reserve: bool
    submitted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        seen = (f"{self.job_name}: {self.queued} job(s) queued (cap {self.max_queued}), {self.ready} READY "
                f"firework(s) of category {self.category}, {self.per_job} per job"
                + (" (reservation mode)" if self.reserve else ""))
        if self.submitted:
            return f"{seen}: submitted {len(self.submitted)} job(s): {', '.join(self.submitted)}"
        reason = "nothing READY" if not self.ready else "cap reached"
        return f"{seen}: {reason}, submitted nothing"


def jobs_to_submit(ready: int, queued: int, max_queued: int, per_job: int) -> int:
    """Free places under the cap, but no more jobs than the READY fireworks fill."""
    return max(0, min(max_queued - queued, math.ceil(ready / per_job)))


def load_launch_config(config_dir: Path) -> dict:
    path = Path(config_dir).expanduser() / LAUNCH_FILE
    if not path.is_file():
        raise LaunchError(f"{path} does not exist; write the directory again with `crystalgen hpc init --out "
                          f"{config_dir}` (it records the job name and --max-queued there)")
    return yaml.safe_load(path.read_text())


def count_queued(q_type: str, job_name: str, user: str, timeout: float) -> int:
    """The user's jobs named ``job_name`` that the scheduler still holds (pending, running, ...)."""
    argv = (["squeue", "-h", "-u", user, "-n", job_name, "-o", "%i"] if q_type == "SLURM"
            else ["qselect", "-u", user, "-N", job_name])
    if shutil.which(argv[0]) is None:
        raise LaunchError(f"{argv[0]} not found on PATH: hpc launch counts this directory's {NAMES[q_type]} jobs "
                          "with it")
    result = run_command(argv, timeout)
    if result.returncode != 0:
        raise LaunchError(f"`{' '.join(argv)}` failed: {first_line(result.stderr or result.stdout)}")
    return sum(1 for line in result.stdout.splitlines() if line.strip())


def _block_dir(launch_dir: Path) -> Path:
    """The newest ``block_*`` folder (qlaunch's choice), or a new one when it is full or there is none."""
    from fireworks.utilities.fw_utilities import create_datestamp_dir

    blocks = sorted(launch_dir.glob("block_*"))
    if blocks and len(list(blocks[-1].glob("launcher_*"))) < NJOBS_BLOCK:
        return blocks[-1]
    return Path(create_datestamp_dir(str(launch_dir), logging.getLogger(__name__)))


class _Errors(logging.Handler):
    """Collects the error records FireWorks' queue launcher and adapter log instead of raising."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _refusal_reason(messages: list[str]) -> str:
    """The scheduler's own words from FireWorks' log records (stderr is logged as a bytes repr)."""
    for message in messages:
        if "The error response reads: " in message:
            response = message.split("The error response reads: ", 1)[1].strip()
            try:
                response = ast.literal_eval(response)
            except (ValueError, SyntaxError):
                pass
            text = response.decode(errors="replace") if isinstance(response, bytes) else str(response)
            return first_line(text)
    useful = [first_line(m) for m in messages if m.strip() and not m.startswith("----|")]
    return useful[0] if useful else "no message"


def _submit(lpad, fworker, qadapter, block: Path, reserve: bool):
    """One job through FireWorks' queue launcher: its id, None when nothing is READY any more, False when refused."""
    from fireworks.queue.queue_launcher import launch_rocket_to_queue

    # FireWorks' adapter logs every step to stdout at DEBUG, and monty's `cd` warns of its deprecation
    with redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return launch_rocket_to_queue(lpad, fworker, qadapter, str(block), reserve=reserve, strm_lvl="CRITICAL",
                                      create_launcher_dir=True)


def launch(config_dir: Path, reserve: bool = False, launch_dir: Path = Path("."), timeout: float = 30) -> LaunchReport:
    """Submit this directory's jobs up to its cap; LaunchError / SchedulerCheckError say why not."""
    from fireworks import FWorker, LaunchPad
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter
    from pymongo.errors import PyMongoError

    from crystalgen.db.connect import install_fireworks_workarounds

    config_dir = Path(config_dir).expanduser().resolve()
    launch_dir = Path(launch_dir).expanduser().resolve()
    if not launch_dir.is_dir():
        raise LaunchError(f"--launch-dir {launch_dir} is not a directory")
    q_type = load_qadapter(config_dir)["_fw_q_type"]
    config = load_launch_config(config_dir)
    check_config_dir(config_dir, timeout=timeout)  # commands on PATH, controller answers, partition up
    queued = count_queued(q_type, config["job_name"], getpass.getuser(), timeout)

    install_fireworks_workarounds()  # reservation mode allocates launch ids
    lpad = LaunchPad.from_file(str(config_dir / "my_launchpad.yaml"))
    fworker = FWorker.from_file(str(config_dir / "my_fworker.yaml"))
    try:
        ready = lpad.fireworks.count_documents({"state": "READY", **fworker.query})
    except PyMongoError as exc:
        raise LaunchError(f"the database in {config_dir / 'my_launchpad.yaml'} does not answer: "
                          f"{first_line(str(exc))}") from None
    per_job = 1 if reserve else int(config.get("runs_per_job", 1))
    report = LaunchReport(job_name=config["job_name"], category=fworker.category, queued=queued,
                          max_queued=int(config["max_queued"]), ready=ready, per_job=per_job, reserve=reserve)
    wanted = jobs_to_submit(ready, queued, report.max_queued, per_job)
    if not wanted:
        return report

    qadapter = CommonAdapter.from_file(str(config_dir / QADAPTERS[reserve]))
    block = _block_dir(launch_dir)
    errors = _Errors()
    loggers = [logging.getLogger(name) for name in ("qadapter", "queue")]
    for logger in loggers:
        logger.addHandler(errors)
    try:
        for _ in range(wanted):
            job_id = _submit(lpad, fworker, qadapter, block, reserve)
            if job_id is None:  # another launcher took the last READY fireworks
                break
            if not job_id:
                done = f" after submitting {', '.join(report.submitted)}" if report.submitted else ""
                raise LaunchError(f"{SUBMIT[q_type]} refused the job{done}: {_refusal_reason(errors.messages)} "
                                  f"(FireWorks' log: {config_dir / 'logs'})")
            report.submitted.append(str(job_id))
    finally:
        for logger in loggers:
            logger.removeHandler(errors)
    return report

