"""What the Slurm tests do as a user would: ``crystalgen hpc init``, ``qlaunch``, ``squeue``/``scontrol``.

Every command runs as a subprocess against the test cluster (``SLURM_CONF``) with the test's
environment (database settings). Paths come from ``sys.executable`` and the repository root, so
the same code runs from any checkout and venv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from slurm.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
BIN = Path(sys.executable).parent  # the venv's bin (not resolved: a venv's python is a symlink)
VENV = BIN.parent
QLAUNCH = str(BIN / "qlaunch")


def job_pythonpath() -> str:
    """The jobs import this checkout (and the tests' toy jobs), whatever the venv has installed."""
    return os.pathsep.join([str(REPO), str(TESTS)])


def run(argv: list[str], cluster: Cluster | None, timeout: float = 180, cwd: Path | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONPATH": job_pythonpath()}
    if cluster is not None:
        full_env.update(cluster.env)
    full_env.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full_env)


def crystalgen(*args: str, cluster: Cluster | None = None, timeout: float = 180,
               env: dict | None = None) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "crystalgen", *map(str, args)], cluster, timeout=timeout, env=env)


def hpc_init(out: Path, category: str, walltime: str = "00:10:00", extra_env: dict | None = None,
             options: tuple = ()) -> Path:
    """``crystalgen hpc init --scheduler slurm`` for one worker kind: 1 CPU (and 1 GPU for gpu* categories),
    this venv, this checkout."""
    gpus = "1" if category.startswith("gpu") else "0"
    args = ["hpc", "init", "--scheduler", "slurm", "--category", category, "--gpus", gpus, "--cpus", "1",
            "--walltime", walltime, "--venv", str(VENV), "--env", f"PYTHONPATH={job_pythonpath()}",
            "--env", "MATGL_BACKEND=PYG", "--out", str(out), *options]
    if os.environ.get("CRYSTALGEN_CACHE_DIR"):  # the session's potential-check cache, not the user's
        args += ["--env", f"CRYSTALGEN_CACHE_DIR={os.environ['CRYSTALGEN_CACHE_DIR']}"]
    for key, value in (extra_env or {}).items():
        args += ["--env", f"{key}={value}"]
    result = crystalgen(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def qlaunch(cluster: Cluster, config_dir: Path, launch_root: Path, *args: str, reserve: bool = False,
            timeout: float = 120, env: dict | None = None) -> tuple[list[int], subprocess.CompletedProcess]:
    """``qlaunch -c DIR [-q DIR/my_qadapter_reserve.yaml -r] rapidfire ARGS`` from ``launch_root``;
    returns the Slurm job ids it reported and the finished process."""
    launch_root.mkdir(parents=True, exist_ok=True)
    argv = [QLAUNCH, "-c", str(config_dir)]
    if reserve:
        argv += ["-q", str(config_dir / "my_qadapter_reserve.yaml"), "-r"]
    result = run([*argv, "rapidfire", *args], cluster, timeout=timeout, cwd=launch_root, env=env)
    output = result.stdout + result.stderr
    return [int(j) for j in re.findall(r"job_id is (\d+)", output)], result


@dataclass
class Job:
    """One Slurm job as ``scontrol -o show job`` reports it (finished jobs stay for MinJobAge = 600 s)."""

    fields: dict[str, str]

    @property
    def id(self) -> int:
        return int(self.fields["JobId"])

    @property
    def state(self) -> str:
        return self.fields.get("JobState", "")

    @property
    def workdir(self) -> Path:
        return Path(self.fields.get("WorkDir", "/nonexistent"))

    @property
    def gres(self) -> str:
        return self.fields.get("TresPerNode", "")

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def output(self, lines: int = 40) -> str:
        """The tail of the job's stdout/stderr files (the template names them NAME-JOBID.out/.error)."""
        parts = []
        for path in sorted(self.workdir.glob(f"*-{self.id}.*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)


def _parse_oneliner(line: str) -> dict[str, str]:
    fields = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


def jobs(cluster: Cluster, job_ids: list[int] | None = None) -> dict[int, Job]:
    """The cluster's jobs (all, or these ids) by id."""
    result = cluster.run("scontrol", "-o", "show", "job", timeout=30)
    found = {}
    for line in result.stdout.splitlines():
        if line.startswith("JobId="):
            job = Job(_parse_oneliner(line))
            if job_ids is None or job.id in job_ids:
                found[job.id] = job
    return found


def wait_for_jobs(cluster: Cluster, job_ids: list[int], timeout: float = 300) -> dict[int, Job]:
    """Poll until none of ``job_ids`` is pending or running; returns their final records."""
    deadline = time.monotonic() + timeout
    while True:
        current = jobs(cluster, job_ids)
        if all(j.state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING") for j in current.values()):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"Slurm jobs {job_ids} still {[j.state for j in current.values()]} after "
                                 f"{timeout:.0f} s\n" + "\n".join(j.output() for j in current.values()))
        time.sleep(1)


def wait_until(condition, what: str, timeout: float = 180, interval: float = 1, details=lambda: ""):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached after {timeout:.0f} s\n{details()}")
        time.sleep(interval)


def job_of(launch_dir: str, jobs_by_id: dict[int, Job]) -> int | None:
    """The Slurm job a FireWorks launch ran in: the one whose working directory holds the launch directory."""
    for job in jobs_by_id.values():
        if Path(launch_dir) == job.workdir or job.workdir in Path(launch_dir).parents:
            return job.id
    return None
