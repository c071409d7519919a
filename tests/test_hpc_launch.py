"""``crystalgen hpc launch DIR`` with stand-in scheduler commands and a real LaunchPad (the real Slurm:
tests/test_slurm_qlaunch.py). The stand-ins log their arguments and keep a job counter, so the tests
see what was asked of the scheduler; the fireworks are real, in the session's database server."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys

import pytest

from hpc.launch import LaunchError, jobs_to_submit, launch
from hpc.scheduler_check import SchedulerCheckError

COMMANDS = ("sbatch", "squeue", "sinfo", "qsub", "qstat", "qselect")
DEFAULTS = {
    # the cluster's answers; $QUEUED says how many jobs the queue listing shows
    "sinfo": "echo 'debug*|up|4|(null)'",
    "squeue": 'i=0; while [ "$i" -lt "$(cat $STATE/queued)" ]; do echo $((1000 + i)); i=$((i + 1)); done',
    "qselect": 'i=0; while [ "$i" -lt "$(cat $STATE/queued)" ]; do echo $((1000 + i)).pbs; i=$((i + 1)); done',
    "qstat": "exit 0",
    "sbatch": 'n=$(($(cat $STATE/jobs) + 1)); echo $n > $STATE/jobs; echo "Submitted batch job $n"',
    "qsub": 'n=$(($(cat $STATE/jobs) + 1)); echo $n > $STATE/jobs; echo "$n.pbs01"',
}


@pytest.fixture
def scheduler(tmp_path, monkeypatch):
    """Stand-in scheduler commands first on PATH; ``scheduler(queued=N, sbatch=BODY)`` sets the answers,
    ``scheduler.calls(name)`` lists each call's arguments."""
    bin_dir, state = tmp_path / "bin", tmp_path / "scheduler"
    bin_dir.mkdir()
    state.mkdir()
    (state / "jobs").write_text("100\n")

    class Scheduler:
        def __call__(self, queued: int = 0, **bodies: str) -> None:
            (state / "queued").write_text(f"{queued}\n")
            for name in COMMANDS:
                path = bin_dir / name
                log = f'echo "$*" >> {state}/{name}.calls\n'
                path.write_text(f"#!/bin/sh\nSTATE={state}\n{log}{bodies.get(name, DEFAULTS[name])}\n")
                path.chmod(0o755)

        @staticmethod
        def calls(name: str) -> list[str]:
            path = state / f"{name}.calls"
            return path.read_text().splitlines() if path.exists() else []

    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    stand_in = Scheduler()
    stand_in()
    return stand_in


def _config(settings, tmp_path, name: str, **options):
    from crystalgen.db import mongo_uri
    from hpc.templates import ClusterOptions, render_cluster_files

    paths = render_cluster_files(ClusterOptions(**options), settings, mongo_uri(settings), tmp_path / name)
    return paths["qadapter"].parent


def _ready_fireworks(lpad, counts: dict[str, int]) -> None:
    from fireworks import Firework, ScriptTask, Workflow

    fws = [Firework(ScriptTask.from_str("true"), spec={"_category": category}, name=f"{category}-{i}")
           for category, n in counts.items() for i in range(n)]
    lpad.add_wf(Workflow(fws))


def _states(lpad, category: str) -> list[str]:
    return sorted(fw["state"] for fw in lpad.fireworks.find({"spec._category": category}, {"state": 1}))


@pytest.mark.parametrize(("ready", "queued", "cap", "per_job", "expected"), [
    (5, 1, 3, 1, 2),   # the cap leaves two places
    (1, 0, 3, 1, 1),   # one READY firework fills one job
    (3, 0, 10, 2, 2),  # packed: 2 fireworks per job
    (0, 0, 3, 1, 0),   # nothing READY
    (9, 5, 3, 1, 0),   # already over the cap (the cap was lowered)
])
def test_jobs_to_submit(ready, queued, cap, per_job, expected):
    assert jobs_to_submit(ready, queued, cap, per_job) == expected


def test_slurm_cap_counts_only_this_directorys_jobs(settings, tmp_path, scheduler):
    from crystalgen.db import launchpad

    lpad = launchpad()
    _ready_fireworks(lpad, {"cpu": 5, "gpu": 2})
    config = _config(settings, tmp_path, "cpu", scheduler="slurm", category="cpu", max_queued=3)
    launches = tmp_path / "launches"
    launches.mkdir()

    scheduler(queued=1)
    report = launch(config, launch_dir=launches)
    assert (report.queued, report.ready, report.submitted) == (1, 5, ["101", "102"])
    assert scheduler.calls("squeue") == [f"-h -u {getpass.getuser()} -n crystalgen-cpu -o %i"]
    scripts = sorted(launches.glob("block_*/launcher_*/FW_submit.script"))
    assert len(scripts) == 2 and all("#SBATCH --job-name=crystalgen-cpu" in s.read_text() for s in scripts)
    assert "1 job(s) queued (cap 3), 5 READY firework(s) of category cpu" in report.summary()
    assert _states(lpad, "cpu") == ["READY"] * 5  # rapidfire jobs pull their fireworks when they start

    scheduler(queued=3)  # the two jobs are queued now: the cap is reached
    report = launch(config, launch_dir=launches)
    assert report.submitted == [] and report.summary().endswith("cap reached, submitted nothing")
    assert len(scheduler.calls("sbatch")) == 2

    packed = _config(settings, tmp_path, "packed", scheduler="slurm", category="cpu", max_queued=10, runs_per_job=2)
    scheduler(queued=0)
    assert launch(packed, launch_dir=launches).submitted == ["103", "104", "105"]  # 5 READY, 2 per job

    scheduler(queued=0)  # reservation mode: one job per firework, which is RESERVED for it
    report = launch(config, reserve=True, launch_dir=launches)
    assert report.submitted == ["106", "107", "108"] and report.per_job == 1
    assert _states(lpad, "cpu") == ["READY"] * 2 + ["RESERVED"] * 3
    reserved = [launch["state_history"][-1].get("reservation_id") for launch in lpad.launches.find()]
    assert sorted(reserved) == ["106", "107", "108"]
    assert len(list(launches.glob("block_*"))) == 1  # one block folder, as qlaunch keeps


def test_pbs_counts_with_qselect(settings, tmp_path, scheduler):
    from crystalgen.db import launchpad

    _ready_fireworks(launchpad(), {"cpu-vasp": 4})
    config = _config(settings, tmp_path, "pbs", scheduler="pbs", category="cpu-vasp", max_queued=3)
    scheduler(queued=2)
    report = launch(config, launch_dir=tmp_path)
    assert report.submitted == ["101"]
    assert scheduler.calls("qselect") == [f"-u {getpass.getuser()} -N crystalgen-cpu-vasp"]
    (script,) = tmp_path.glob("block_*/launcher_*/FW_submit.script")
    assert "#PBS -N crystalgen-cpu-vasp" in script.read_text()


def test_refusals_stop_with_one_message_and_give_reservations_back(settings, tmp_path, scheduler):
    from crystalgen.db import launchpad

    lpad = launchpad()
    _ready_fireworks(lpad, {"cpu": 2})
    config = _config(settings, tmp_path, "cpu", scheduler="slurm", category="cpu", max_queued=3)

    scheduler(sbatch="echo 'sbatch: error: Batch job submission failed: Job violates accounting/QOS policy' >&2; "
                     "exit 1")
    with pytest.raises(LaunchError, match=r"^sbatch refused the job: sbatch: error: Batch job submission failed: "
                                          r"Job violates accounting/QOS policy \(FireWorks' log: "):
        launch(config, reserve=True, launch_dir=tmp_path)
    assert _states(lpad, "cpu") == ["READY", "READY"]  # the refused reservation was cancelled

    scheduler(squeue="echo 'squeue: error: Invalid user: nobody' >&2; exit 1")
    with pytest.raises(LaunchError, match="^`squeue -h -u .* -n crystalgen-cpu -o %i` failed: squeue: error: Inval"):
        launch(config, launch_dir=tmp_path)
    scheduler(sinfo="echo 'debug*|down|4|(null)'")
    with pytest.raises(SchedulerCheckError, match="^Slurm partition 'debug' is down, not up"):
        launch(config, launch_dir=tmp_path)
    assert scheduler.calls("sbatch") == ["FW_submit.script"]  # only the refused one

    (config / "crystalgen_launch.yaml").unlink()  # a directory from before hpc launch existed
    scheduler()
    result = subprocess.run([sys.executable, "-m", "crystalgen", "hpc", "launch", str(config)], capture_output=True,
                            text=True, timeout=120, env=dict(os.environ), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"{config / 'crystalgen_launch.yaml'} does not exist; write the "
                                                  f"directory again with `crystalgen hpc init --out {config}` (it "
                                                  "records the job name and --max-queued there)"]
