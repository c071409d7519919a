"""``qlaunch`` against a real Slurm (the one-machine cluster of tests/slurm/cluster.py), end to end.

What a user does on a cluster: ``crystalgen hpc init`` for a GPU and a CPU worker directory,
``crystalgen campaign submit``, ``qlaunch -c DIR rapidfire`` (and ``qlaunch -r``), ``crystalgen
resubmit`` after a failed VASP run. The Slurm jobs run ``crystalgen-rlaunch`` from this venv and
checkout against the session's database server. The cluster has one node with 2 CPUs and two
count-only GPUs; every worker asks for 1 CPU (and 1 GPU), so two jobs run at once.

The tests skip (with the reason) only where Slurm cannot start: not installed and cannot be
installed (not root, no apt-get), or daemons that will not run as a non-root user. As root, a
cluster that does not come up is a failure. In CI (root, Debian) Slurm is installed on first use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml

from slurm import helpers
from slurm.cluster import Cluster, ClusterUnavailable, ensure_installed, free_port
from slurm.helpers import crystalgen, hpc_init, job_of, jobs, qlaunch, wait_for_jobs, wait_until

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_cluster():
    """The test cluster for this module: installed if needed, started in a temporary directory,
    stopped (by pid) and removed after the module's last test, whatever the tests did."""
    try:
        ensure_installed()
    except ClusterUnavailable as exc:  # not installed, and not root (or no apt-get / no package registry)
        pytest.skip(f"no Slurm test cluster: {exc}")
    root = tempfile.mkdtemp(prefix="crystalgen-slurm-")
    cluster = Cluster(root)
    try:
        try:
            cluster.start()
        except ClusterUnavailable as exc:
            if os.geteuid() != 0:  # slurmd and slurmctld may well refuse to run as another user
                pytest.skip(f"no Slurm test cluster as uid {os.geteuid()}: {exc}")
            pytest.fail(f"the Slurm test cluster did not start: {exc}")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def slurm(slurm_cluster):
    """The cluster, with every job of the test cancelled at the end (a failed test leaves none running)."""
    yield slurm_cluster
    slurm_cluster.cancel_jobs()


def _states(lpad) -> dict[int, str]:
    return {fw["fw_id"]: fw["state"] for fw in lpad.fireworks.find({}, {"fw_id": 1, "state": 1})}


def _diagnose(lpad, slurm_jobs=()) -> str:
    """Firework states, the last stack trace of each FIZZLED one and the jobs' output, for failures."""
    lines = [str({fw["fw_id"]: (fw["name"], fw["state"]) for fw in lpad.fireworks.find({}, {"name": 1, "state": 1,
                                                                                           "fw_id": 1})})]
    for fw in lpad.fireworks.find({"state": "FIZZLED"}, {"launches": 1}):
        launch = lpad.launches.find_one({"launch_id": fw["launches"][-1]}) or {}
        stored = (launch.get("action") or {}).get("stored_data") or {}
        lines.append(str(stored.get("_exception", {}).get("_stacktrace")))
    lines += [job.output() for job in slurm_jobs]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the cluster itself


def test_two_one_cpu_jobs_run_at_once_and_gpus_are_counted(slurm, tmp_path):
    """CR_CPU on 2 CPUs: a 1-CPU GPU job and a 1-CPU job overlap; gres/gpu is scheduled and enforced."""
    script = "echo CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-none}; date +%s.%N; sleep 3; date +%s.%N"
    ids = []
    for extra in (["--gres=gpu:1"], []):
        result = slurm.run("sbatch", "--parsable", "--cpus-per-task=1", "--time=00:01:00", f"--chdir={tmp_path}",
                           "--output=job-%j.out", *extra, "--wrap", script)
        assert result.returncode == 0, result.stderr
        ids.append(int(result.stdout.strip().split(";")[0]))
    done = wait_for_jobs(slurm, ids, timeout=60)
    assert [done[i].state for i in ids] == ["COMPLETED", "COMPLETED"]
    assert done[ids[0]].gres == "gres:gpu:1" and done[ids[1]].gres == ""
    outputs = [(tmp_path / f"job-{i}.out").read_text().split() for i in ids]
    assert outputs[0][0] != "CUDA_VISIBLE_DEVICES=none" and outputs[1][0] == "CUDA_VISIBLE_DEVICES=none"
    (start0, end0), (start1, end1) = ((float(o[1]), float(o[2])) for o in outputs)
    assert start0 < end1 and start1 < end0, "the two 1-CPU jobs did not run at the same time"

    too_many = slurm.run("sbatch", "--gres=gpu:3", "--time=00:01:00", "--wrap", "true")
    assert too_many.returncode != 0 and "Requested node configuration is not available" in too_many.stderr


# --------------------------------------------------------------------------- a real campaign through qlaunch


CAMPAIGN_FILE = Path(__file__).resolve().parent / "slurm" / "taw-slurm.yaml"  # also the README's


def test_qlaunch_runs_each_category_in_its_own_slurm_job(slurm, settings, tmp_path):
    """hpc init x2, campaign submit, qlaunch gpu then cpu: every firework COMPLETED, each Slurm job ran
    only fireworks of its worker's category, and the GPU job asked Slurm for its GPU."""
    from crystalgen.db import launchpad

    campaign_file = CAMPAIGN_FILE
    campaign = yaml.safe_load(campaign_file.read_text())
    dirs = {category: hpc_init(tmp_path / f"fw_{category}", category) for category in ("gpu", "cpu")}
    for category, config_dir in dirs.items():
        check = crystalgen("hpc", "check", config_dir, cluster=slurm)
        assert check.returncode == 0 and "'debug' is up" in check.stdout, check.stdout + check.stderr
    assert "gres gpu:2" in check.stdout

    submitted = crystalgen("campaign", "submit", campaign_file, cluster=slurm)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    lpad = launchpad()

    job_category = {}
    for category in ("gpu", "cpu"):  # the CPU stages become READY only after the GPU stages ran
        ids, launched = qlaunch(slurm, dirs[category], tmp_path / f"launches_{category}",
                                "--nlaunches", "1", "--maxjobs_queue", "2")
        assert len(ids) == 1, launched.stdout + launched.stderr
        job_category[ids[0]] = category
        queued = jobs(slurm, ids)[ids[0]]  # what Slurm was asked for, read while the job is queued or running
        assert queued.gres == ("gres:gpu:1" if category == "gpu" else ""), queued.fields
        assert queued["NumCPUs"] == "1" and queued["Partition"] == "debug"
        finished = wait_for_jobs(slurm, ids)
        assert finished[ids[0]].state == "COMPLETED", _diagnose(lpad, finished.values())
    slurm_jobs = jobs(slurm, list(job_category))
    assert all(job["ExitCode"] == "0:0" for job in slurm_jobs.values()), _diagnose(lpad, slurm_jobs.values())

    fws = {fw["fw_id"]: fw for fw in lpad.fireworks.find({}, {"fw_id": 1, "state": 1, "spec": 1, "name": 1})}
    assert {fw["state"] for fw in fws.values()} == {"COMPLETED"}, _diagnose(lpad, slurm_jobs.values())
    for fw in fws.values():  # routing follows the campaign's resources
        stage = fw["spec"].get("crystalgen_stage")
        if stage in campaign["resources"]:
            assert fw["spec"]["_category"] == campaign["resources"][stage]["category"], (fw["name"], stage)
    stages_by_job = {job_id: set() for job_id in job_category}
    for launch in lpad.launches.find({}, {"fw_id": 1, "fworker": 1, "launch_dir": 1, "state": 1}):
        fw = fws[launch["fw_id"]]
        job_id = job_of(launch["launch_dir"], slurm_jobs)
        assert job_id is not None, f"launch of {fw['name']} in {launch['launch_dir']} is in no Slurm job"
        category = fw["spec"]["_category"]
        assert job_category[job_id] == category, f"{fw['name']} ({category}) ran in the {job_category[job_id]} job"
        assert launch["fworker"]["name"] == f"crystalgen-{category}-slurm"
        stages_by_job[job_id].add(fw["spec"].get("crystalgen_stage"))
    print("slurm jobs:", {i: (job_category[i], job.state, job["ExitCode"]) for i, job in slurm_jobs.items()})
    print("fireworks:", {fw["name"]: (fw["spec"]["_category"], fw["state"]) for fw in fws.values()})
    gpu_job, cpu_job = sorted(job_category)
    assert {"generate", "prerelax"} <= stages_by_job[gpu_job] and not stages_by_job[gpu_job] & {"relax", "hull"}
    assert {"relax", "hull"} <= stages_by_job[cpu_job] and not stages_by_job[cpu_job] & {"generate", "prerelax"}
    script = next(slurm_jobs[gpu_job].workdir.glob("FW_submit.script")).read_text()
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH --cpus-per-task=1" in script
    assert "--gres" not in next(slurm_jobs[cpu_job].workdir.glob("FW_submit.script")).read_text()

    status = crystalgen("campaign", "status", "taw-slurm", "--json")
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)
    assert summary["fireworks"]["relax"] == {"COMPLETED": 1} and summary["lost_fw_ids"] == []
    listed = crystalgen("candidates", "taw-slurm", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert rows and all(row["formula"] == "TaW" and isinstance(row["e_above_hull"], float) for row in rows)


# --------------------------------------------------------------------------- failures, resubmission, qlaunch -r

HANG_ONCE = textwrap.dedent('''
    # A node that dies: the first run for $FAKE_VASP_HANG sleeps until its Slurm job is cancelled.
    import os as _os, pathlib as _pathlib, time as _time
    from pymatgen.io.vasp import Poscar as _Poscar
    _marker = _pathlib.Path(_os.environ["FAKE_VASP_HANG_MARKER"])
    if (_Poscar.from_file("POSCAR").structure.composition.reduced_formula == _os.environ.get("FAKE_VASP_HANG")
            and not _marker.exists()):
        _marker.write_text(_os.getcwd())
        _time.sleep(600)
''')
QUEUE = {"generate": {"walltime": "00:05:00", "gpus": 1}, "relax": {"walltime": "00:03:00"},
         "hull": {"walltime": "00:02:00"}}  # the toy campaign's resources: each firework's _queueadapter


def test_failed_and_killed_vasp_runs_rerun_by_resubmit_in_new_reserved_slurm_jobs(slurm, settings, tmp_path):
    """The toy VASP campaign of test_hpc_workflow (real custodian around a fake VASP): TaB2 hits ZBRENT,
    the job running BW is cancelled (a dead node); `crystalgen resubmit` fixes both, and `qlaunch -r`
    runs them in new Slurm jobs whose #SBATCH --time comes from each firework's _queueadapter
    (BW's doubled by the lost-run fix)."""
    from test_hpc_workflow import CAMPAIGN, FAKE_VASP, toy_campaign_flow

    from monty.os.path import zpath
    from pymatgen.io.vasp import Incar

    from crystalgen.db import launchpad
    from flows.resources import StageResources
    from hpc.submit import submit_flow

    fake = tmp_path / "fake_vasp.py"
    fake.write_text(HANG_ONCE + FAKE_VASP)
    marker = tmp_path / "hung_once"
    fake_env = {"FAKE_VASP_SCRIPT": fake, "FAKE_VASP_ZBRENT": "TaB2", "FAKE_VASP_HANG": "BW",
                "FAKE_VASP_HANG_MARKER": marker, "OMP_NUM_THREADS": 1}
    dirs = {c: hpc_init(tmp_path / f"fw_{c}", c, extra_env=fake_env) for c in ("gpu", "cpu")}
    lpad = launchpad()
    submit_flow(toy_campaign_flow(StageResources(**QUEUE)), CAMPAIGN, lpad=lpad, content_fingerprint="toy")

    # reservation mode: the generate firework's _queueadapter (5 min, 1 GPU) decides the job's request
    (gen_job,), out = qlaunch(slurm, dirs["gpu"], tmp_path / "launches", "--nlaunches", "1", reserve=True)
    script = next(jobs(slurm, [gen_job])[gen_job].workdir.glob("FW_submit.script")).read_text()
    assert "#SBATCH --time=00:05:00" in script and "#SBATCH --gres=gpu:1" in script, script
    assert "singleshot --fw_id" in script and "#SBATCH --comment=generate" in script
    assert "#SBATCH --job-name=crystalgen-gpu" in script  # what `crystalgen hpc launch` counts
    queued = jobs(slurm, [gen_job])[gen_job]
    assert queued["TimeLimit"] == "00:05:00" and queued.gres == "gres:gpu:1"
    finished = wait_for_jobs(slurm, [gen_job])
    assert finished[gen_job].state == "COMPLETED", _diagnose(lpad, finished.values())
    relax = {fw["name"]: fw["fw_id"] for fw in lpad.fireworks.find({"spec.crystalgen_stage": "relax"})}
    assert len(relax) == 3 and all(lpad.get_fw_by_id(i).state == "READY" for i in relax.values())

    # two CPU jobs at once (non-reservation): TaB2 fails with ZBRENT, BW hangs; then the jobs die
    first, out = qlaunch(slurm, dirs["cpu"], tmp_path / "launches", "--nlaunches", "2", "--maxjobs_queue", "4")
    assert len(first) == 2, out.stdout + out.stderr
    states = lambda: {fw_id: lpad.get_fw_by_id(fw_id).state for fw_id in relax.values()}  # noqa: E731
    wait_until(lambda: marker.exists() and sorted(states().values()) == ["COMPLETED", "FIZZLED", "RUNNING"],
               "TaB done, TaB2 failed, BW hanging", details=lambda: _diagnose(lpad, jobs(slurm, first).values()))
    # the node running BW dies; the other job, waiting for BW's children, goes with it
    assert slurm.run("scancel", *map(str, first)).returncode == 0
    assert {job.state for job in wait_for_jobs(slurm, first, timeout=60).values()} == {"CANCELLED"}
    lost_fw = next(fw_id for fw_id, state in states().items() if state == "RUNNING")
    zbrent_fw = next(fw_id for fw_id, state in states().items() if state == "FIZZLED")

    fixed = crystalgen("resubmit", CAMPAIGN, "--lost-after", "1", cluster=slurm)
    assert fixed.returncode == 0 and "rerun 2 firework(s)" in fixed.stdout, fixed.stdout + fixed.stderr
    assert "zbrent" in fixed.stdout and "lost" in fixed.stdout
    assert lpad.fireworks.find_one({"fw_id": lost_fw})["spec"]["_queueadapter"]["walltime"] == "00:06:00"
    assert lpad.fireworks.find_one({"fw_id": zbrent_fw})["spec"]["_queueadapter"]["walltime"] == "00:03:00"

    # qlaunch -r: one new job per rerun firework, each with that firework's walltime
    rerun, out = qlaunch(slurm, dirs["cpu"], tmp_path / "launches", "--nlaunches", "2", reserve=True)
    assert len(rerun) == 2, out.stdout + out.stderr
    done = wait_for_jobs(slurm, rerun)
    assert {job.state for job in done.values()} == {"COMPLETED"}, _diagnose(lpad, done.values())
    limits = {}
    for fw_id in (lost_fw, zbrent_fw):
        launch_id = lpad.fireworks.find_one({"fw_id": fw_id})["launches"][-1]
        launch = lpad.launches.find_one({"launch_id": launch_id})
        job_id = job_of(launch["launch_dir"], done)
        assert job_id in rerun and launch["fworker"]["name"] == "crystalgen-cpu-slurm"
        assert any(h.get("reservation_id") == str(job_id) for h in launch["state_history"])
        limits[fw_id] = done[job_id]["TimeLimit"]
    assert limits == {lost_fw: "00:06:00", zbrent_fw: "00:03:00"}
    launch = lpad.launches.find_one({"launch_id": lpad.fireworks.find_one({"fw_id": zbrent_fw})["launches"][-1]})
    assert Incar.from_file(zpath(str(Path(launch["launch_dir"]) / "INCAR")))["IBRION"] == 1  # the fix reached VASP

    (hull_job,), out = qlaunch(slurm, dirs["cpu"], tmp_path / "launches", "--nlaunches", "1", reserve=True)
    finished = wait_for_jobs(slurm, [hull_job])
    assert finished[hull_job]["TimeLimit"] == "00:02:00"
    assert set(_states(lpad).values()) == {"COMPLETED"}, _diagnose(lpad, finished.values())
    print("slurm jobs:", {i: (j.fields["JobName"], j.state, j["TimeLimit"])
                          for i, j in jobs(slurm, [gen_job, *first, *rerun, hull_job]).items()})
    print("fireworks:", {lpad.fireworks.find_one({"fw_id": i})["name"]: state for i, state in _states(lpad).items()})
    history = {d["formula"]: [h["resubmission"]["error_class"] for h in d["history"] if "resubmission" in h]
               for d in lpad.db.candidates.find()}
    assert history == {"TaB": [], "TaB2": ["zbrent"], "BW": ["lost"]}
    assert all(d["stage"] == "hull" for d in lpad.db.candidates.find())


# --------------------------------------------------------------------------- packed jobs and hpc launch's cap

SRUN_STEP = "srun --exclusive --nodes 1 --ntasks 1 --cpus-per-task 1"  # the README's vasp_cmd for shared nodes


def test_hpc_launch_packs_relax_fireworks_into_one_slurm_job_under_its_cap(slurm, settings, tmp_path):
    """hpc init --runs-per-job 2 --runs-per-node 2 --max-queued 1: `hpc launch` submits one packed job
    (the cap), a second call submits none; that one Slurm job runs the three toy VASP relaxations two
    at a time, each fake VASP in its own `srun --exclusive` step, and then the hull."""
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire
    from test_hpc_workflow import CAMPAIGN, FAKE_VASP, toy_campaign_flow

    from crystalgen.db import launchpad
    from hpc.submit import submit_flow

    fake = tmp_path / "fake_vasp.py"
    fake.write_text(FAKE_VASP)
    fw_config = tmp_path / "FW_config.yaml"  # FireWorks' own setting: idle rockets poll every 2 s, not 60 s
    fw_config.write_text("RAPIDFIRE_SLEEP_SECS: 2\n")
    fake_env = {"FAKE_VASP_SCRIPT": fake, "FAKE_VASP_SLEEP": 3, "FAKE_VASP_LAUNCHER": SRUN_STEP,
                "OMP_NUM_THREADS": 1, "FW_CONFIG_FILE": fw_config}
    cpu = hpc_init(tmp_path / "fw_cpu", "cpu", extra_env=fake_env,
                   options=("--runs-per-job", "2", "--runs-per-node", "2", "--max-queued", "1"))
    lpad = launchpad()
    submit_flow(toy_campaign_flow(), CAMPAIGN, lpad=lpad, content_fingerprint="toy")
    (tmp_path / "gpu").mkdir()
    rapidfire(lpad, FWorker(name="gpu-here", category="gpu"), m_dir=str(tmp_path / "gpu"), nlaunches=0, max_loops=1,
              sleep_time=1, strm_lvl="ERROR")  # generation (in this process) fans out three relax fireworks
    relax = [fw["fw_id"] for fw in lpad.fireworks.find({"spec.crystalgen_stage": "relax", "state": "READY"})]
    assert len(relax) == 3, _diagnose(lpad)

    launches = tmp_path / "launches"
    launches.mkdir()
    first = crystalgen("hpc", "launch", cpu, "--launch-dir", launches, cluster=slurm)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.startswith("crystalgen-cpu: 0 job(s) queued (cap 1), 3 READY firework(s) of category cpu, "
                                   "2 per job: submitted 1 job(s): "), first.stdout
    packed = int(first.stdout.split(": ")[-1])
    second = crystalgen("hpc", "launch", cpu, "--launch-dir", launches, cluster=slurm)
    assert second.returncode == 0 and second.stdout.strip().endswith("cap reached, submitted nothing"), second.stdout
    assert "1 job(s) queued (cap 1)" in second.stdout
    assert [i for i, job in jobs(slurm).items() if job.state in ("PENDING", "CONFIGURING", "RUNNING")] == [packed]

    script = next(jobs(slurm, [packed])[packed].workdir.glob("FW_submit.script")).read_text()
    assert "#SBATCH --job-name=crystalgen-cpu" in script and "--gres" not in script
    assert "#SBATCH --nodes=1\n#SBATCH --ntasks-per-node=2\n#SBATCH --cpus-per-task=1" in script
    assert f"crystalgen-rlaunch -c {cpu} multi 2 --timeout 540" in script
    done = wait_for_jobs(slurm, [packed])
    assert done[packed].state == "COMPLETED" and done[packed]["NumCPUs"] == "2", _diagnose(lpad, done.values())
    assert set(_states(lpad).values()) == {"COMPLETED"}, _diagnose(lpad, done.values())

    steps, intervals, processes = {}, [], set()
    for launch in lpad.launches.find({"fw_id": {"$in": relax}}):
        assert job_of(launch["launch_dir"], done) == packed, launch["launch_dir"]
        vasp_out = (Path(launch["launch_dir"]) / "vasp.out").read_text()
        step = re.search(r"slurm job (\d+) step (\d+)", vasp_out)  # written by the fake VASP inside srun
        assert step, vasp_out
        steps[launch["fw_id"]] = (int(step[1]), int(step[2]))
        times = {entry["state"]: entry["created_on"] for entry in launch["state_history"]}
        intervals.append((str(times["RUNNING"]), str(times["COMPLETED"])))
        processes.add(launch["action"]["stored_data"]["multiprocess_name"])
    assert {job for job, _ in steps.values()} == {packed} and len({s for _, s in steps.values()}) == 3, steps
    assert len(processes) == 2, processes  # two rockets side by side in the one allocation
    intervals.sort()
    assert any(b[0] < a[1] for a, b in zip(intervals, intervals[1:])), f"no two relaxations overlapped: {intervals}"
    hull = lpad.launches.find_one({"fw_id": {"$nin": relax}, "launch_dir": {"$regex": str(launches)}})
    assert hull is not None and job_of(hull["launch_dir"], done) == packed

    idle = crystalgen("hpc", "launch", cpu, "--launch-dir", launches, cluster=slurm)
    assert idle.returncode == 0 and idle.stdout.strip().endswith("nothing READY, submitted nothing"), idle.stdout
    print("slurm jobs:", {i: (j.fields["JobName"], j.state, j["NumCPUs"]) for i, j in done.items()})
    print("relax steps (job, step):", steps, "intervals:", intervals)
    print("fireworks:", {lpad.fireworks.find_one({"fw_id": i})["name"]: state for i, state in _states(lpad).items()})


# --------------------------------------------------------------------------- Slurm absent or refusing


def _one_ready_firework(lpad):
    from test_hpc_workflow import CAMPAIGN, toy_campaign_flow

    from hpc.submit import submit_flow

    submit_flow(toy_campaign_flow(), CAMPAIGN, lpad=lpad, content_fingerprint="toy")
    (fw,) = lpad.fireworks.find({}, {"fw_id": 1})
    return fw["fw_id"]


def test_missing_unreachable_or_refusing_slurm_gives_one_message_and_no_hang(slurm, settings, tmp_path):
    from crystalgen.db import launchpad

    lpad = launchpad()
    fw_id = _one_ready_firework(lpad)
    good = hpc_init(tmp_path / "fw_gpu", "gpu")
    wrong_partition = hpc_init(tmp_path / "fw_nosuch", "gpu", options=("--queue", "nosuch"))

    # a partition that does not exist: hpc check says so; sbatch refuses and qlaunch returns at once
    check = crystalgen("hpc", "check", wrong_partition, cluster=slurm)
    assert check.returncode == 1
    assert check.stderr.strip().splitlines() == ["Slurm partition 'nosuch' (queue in my_qadapter.yaml) does not "
                                                 "exist; partitions: debug"], check.stderr
    for reserve in (False, True):
        ids, out = qlaunch(slurm, wrong_partition, tmp_path / "launches", "--nlaunches", "1", reserve=reserve,
                           timeout=60)
        assert ids == [] and "Invalid partition name specified" in out.stdout + out.stderr
        assert lpad.get_fw_by_id(fw_id).state == "READY"  # a refused reservation is given back

    # the controller does not answer (slurmctld down): this cluster's config with nothing on its port
    dead = tmp_path / "dead"
    dead.mkdir()
    conf = slurm.conf.read_text()
    conf = "\n".join(f"SlurmctldPort={free_port()}" if line.startswith("SlurmctldPort=") else line
                     for line in conf.splitlines())
    (dead / "slurm.conf").write_text(conf + "\nMessageTimeout=2\n")  # the client gives up after 1 s, not 9
    shutil.copy(slurm.root / "gres.conf", dead / "gres.conf")
    down = {"SLURM_CONF": str(dead / "slurm.conf")}
    check = crystalgen("hpc", "check", good, cluster=slurm, env=down, timeout=60)
    assert check.returncode == 1 and check.stderr.strip().splitlines() == [
        "the Slurm controller does not answer: slurm_load_partitions: Unable to contact slurm controller "
        "(connect failure)"], check.stderr
    ids, out = qlaunch(slurm, good, tmp_path / "launches", "--nlaunches", "1", timeout=90, env=down)
    assert ids == [] and "Unable to contact slurm controller" in out.stdout + out.stderr
    assert lpad.get_fw_by_id(fw_id).state == "READY"

    # no Slurm commands on PATH at all
    no_slurm = {"PATH": str(helpers.BIN)}
    check = crystalgen("hpc", "check", good, env=no_slurm)
    assert check.returncode == 1 and check.stderr.strip().startswith("sbatch, squeue, sinfo not found on PATH")
    ids, out = qlaunch(slurm, good, tmp_path / "launches", "--nlaunches", "1", timeout=60, env=no_slurm)
    assert ids == [] and "Running the command: sbatch caused an error" in out.stdout + out.stderr
    assert lpad.get_fw_by_id(fw_id).state == "READY"
