"""``crystalgen hpc check DIR``: can ``qlaunch -c DIR`` submit from this machine? One line either way.

qlaunch itself is a poor witness when the scheduler is missing or refuses: it logs the failure as
tracebacks and exits 0, and with ``--maxjobs_queue`` it retries a failing ``squeue`` with sleeps
that double from 30 s (about 8 hours in all) without saying why. Run this first, e.g. from cron:
``crystalgen hpc check DIR && qlaunch -c DIR rapidfire ...``. It reads ``DIR/my_qadapter.yaml``
and checks, with a bounded wait, that the scheduler's commands are on PATH, that the controller
answers, and (Slurm) that the partition exists, is up, and has GPUs when the worker asks for them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import typer
import yaml

COMMANDS = {"SLURM": ("sbatch", "squeue", "sinfo"), "PBS": ("qsub", "qstat")}
NAMES = {"SLURM": "Slurm", "PBS": "PBS"}


class SchedulerCheckError(RuntimeError):
    """The worker's jobs cannot be submitted from here; the message says why."""


def run_command(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SchedulerCheckError(f"`{' '.join(argv)}` did not answer within {timeout:.0f} s: "
                                  "the scheduler's controller is not responding") from None


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


def load_qadapter(config_dir: Path) -> dict:
    path = Path(config_dir).expanduser() / "my_qadapter.yaml"
    if not path.is_file():
        raise SchedulerCheckError(f"{path} does not exist; write the directory with `crystalgen hpc init --out "
                                  f"{config_dir}`")
    data = yaml.safe_load(path.read_text()) or {}
    if data.get("_fw_q_type") not in COMMANDS:
        raise SchedulerCheckError(f"{path}: _fw_q_type {data.get('_fw_q_type')!r} is not one of "
                                  f"{', '.join(COMMANDS)}")
    return data


def _check_slurm(qadapter: dict, timeout: float) -> str:
    result = run_command(["sinfo", "--noheader", "--format=%P|%a|%D|%G"], timeout)
    if result.returncode != 0:
        raise SchedulerCheckError(f"the Slurm controller does not answer: {first_line(result.stderr)}")
    partitions: dict[str, dict] = {}
    for line in result.stdout.splitlines():
        name, avail, nodes, gres = (line.split("|") + ["", "", "", ""])[:4]
        info = partitions.setdefault(name.rstrip("*"), {"default": name.endswith("*"), "avail": set(), "nodes": 0,
                                                         "gres": set()})
        info["avail"].add(avail)
        info["nodes"] += int(nodes) if nodes.isdigit() else 0
        info["gres"].update(g for g in gres.split(",") if g and g != "(null)")
    queue = qadapter.get("queue")
    if queue:
        if queue not in partitions:
            raise SchedulerCheckError(f"Slurm partition {queue!r} (queue in my_qadapter.yaml) does not exist; "
                                      f"partitions: {', '.join(partitions) or 'none'}")
    else:
        queue = next((name for name, info in partitions.items() if info["default"]), None)
        if queue is None:
            raise SchedulerCheckError("Slurm has no default partition; name one with `crystalgen hpc init --queue`")
    info = partitions[queue]
    if info["avail"] != {"up"}:
        raise SchedulerCheckError(f"Slurm partition {queue!r} is {'/'.join(sorted(info['avail']))}, not up")
    gpus = qadapter.get("gpus")
    if gpus and not any(g.startswith("gpu") for g in info["gres"]):
        raise SchedulerCheckError(f"Slurm partition {queue!r} has no GPUs (no gres/gpu on its nodes) but the worker "
                                  f"asks for --gres=gpu:{gpus}")
    gres = f", gres {','.join(sorted(info['gres']))}" if info["gres"] else ""
    return f"Slurm partition {queue!r} is up ({info['nodes']} node(s){gres})"


def _check_pbs(qadapter: dict, timeout: float) -> str:
    queue = qadapter.get("queue")
    result = run_command(["qstat", "-Q", *([queue] if queue else [])], timeout)
    if result.returncode != 0:
        raise SchedulerCheckError(f"PBS does not answer `qstat -Q{' ' + queue if queue else ''}`: "
                                  f"{first_line(result.stderr or result.stdout)}")
    return f"PBS answers (queue {queue or 'default'})"


def check_config_dir(config_dir: Path, timeout: float = 30) -> str:
    """A one-line summary when ``qlaunch -c config_dir`` can submit from here; else SchedulerCheckError."""
    qadapter = load_qadapter(config_dir)
    q_type = qadapter["_fw_q_type"]
    missing = [cmd for cmd in COMMANDS[q_type] if shutil.which(cmd) is None]
    if missing:
        raise SchedulerCheckError(f"{', '.join(missing)} not found on PATH: qlaunch -c {config_dir} submits "
                                  f"{NAMES[q_type]} jobs; run it where the {NAMES[q_type]} commands are "
                                  "(a login node) or load their module")
    summary = (_check_slurm if q_type == "SLURM" else _check_pbs)(qadapter, timeout)
    return f"{summary}: qlaunch -c {config_dir} can submit"


def check_command(
    config_dir: Path = typer.Argument(..., help="worker configuration directory (crystalgen hpc init --out)"),
    timeout: float = typer.Option(30, "--timeout", min=1, help="seconds to wait for the scheduler"),
) -> None:
    """Check that qlaunch -c DIR can submit from here: scheduler commands, controller, partition, GPUs."""
    from crystalgen.cli.errors import fail

    try:
        summary = check_config_dir(config_dir, timeout=timeout)
    except SchedulerCheckError as exc:
        fail(str(exc))
    typer.echo(summary)
