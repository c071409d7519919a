"""`crystalgen hpc init`: FireWorks reads what we render, and the submit script asks for the GPUs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

CLI = [sys.executable, "-m", "crystalgen"]


def _init(out, *args):
    return subprocess.run([*CLI, "hpc", "init", "--out", str(out), *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))


def test_slurm_gpu_files_load_in_fireworks_and_render_gpus(settings, tmp_path):
    from fireworks import FWorker, LaunchPad
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    out = tmp_path / "gpu"
    result = _init(out, "--scheduler", "slurm", "--category", "gpu", "--gpus", "4", "--walltime", "12:00:00",
                   "--queue", "gpu", "--account", "m1234", "--module", "cuda/12.4", "--venv", str(tmp_path / "venv"),
                   "--env", "MATGL_BACKEND=DGL", "--env", "CRYSTALGEN_MATGL_MODELS=/models/matgl dir")
    assert result.returncode == 0, result.stderr

    qadapter = CommonAdapter.from_file(str(out / "my_qadapter.yaml"))
    assert qadapter.q_type == "SLURM"
    script = qadapter.get_script_str(str(tmp_path / "launch"))
    assert "#SBATCH --gres=gpu:4" in script
    assert "TORCHRUN" not in script  # the generate firework starts torch.distributed.run itself
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --account=m1234" in script
    assert "#SBATCH --time=12:00:00" in script and "module load cuda/12.4" in script
    assert f"source {tmp_path / 'venv' / 'bin' / 'activate'}" in script
    assert "export MATGL_BACKEND=DGL" in script and "export CRYSTALGEN_MATGL_MODELS='/models/matgl dir'" in script
    assert f"crystalgen-rlaunch -c {out} rapidfire --timeout {int(12 * 3600 * 0.9)}" in script
    assert "$$" not in script

    worker = FWorker.from_file(str(out / "my_fworker.yaml"))
    assert worker.category == "gpu" and worker.query["spec._category"] == "gpu"

    lpad = LaunchPad.from_file(str(out / "my_launchpad.yaml"))
    assert lpad.name == settings.database
    lpad.fireworks.count_documents({})  # the rendered launchpad file reaches the database


def test_pbs_cpu_has_no_gpu_request(settings, tmp_path):
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    out = tmp_path / "cpu"
    result = _init(out, "--scheduler", "pbs", "--category", "cpu", "--cpus", "32", "--mem", "128gb",
                   "--launcher", "rlaunch")
    assert result.returncode == 0, result.stderr
    script = CommonAdapter.from_file(str(out / "my_qadapter.yaml")).get_script_str(str(tmp_path))
    assert "#PBS -l select=1:ncpus=32:mem=128gb" in script
    commands = "\n".join(line for line in script.splitlines() if not line.startswith("# "))
    assert "ngpus" not in commands and "torchrun" not in commands
    assert "\nrlaunch -c" in script
    fworker = yaml.safe_load((out / "my_fworker.yaml").read_text())
    assert fworker["category"] == "cpu"


def test_pbs_gpu_requests_ngpus(settings, tmp_path):
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    out = tmp_path / "pbsgpu"
    assert _init(out, "--scheduler", "pbs", "--gpus", "2").returncode == 0
    script = CommonAdapter.from_file(str(out / "my_qadapter.yaml")).get_script_str(str(tmp_path))
    assert "#PBS -l select=1:ncpus=16:ngpus=2" in script


def test_any_fireworks_category_and_gpus_on_request(settings, tmp_path):
    """Sites name their workers freely; GPUs are asked for when --gpus says so (default: categories gpu*)."""
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    for category, args, gres in (("gpu-a100", [], "#SBATCH --gres=gpu:1"), ("cpu-bigmem", [], None),
                                 ("inference", ["--gpus", "2"], "#SBATCH --gres=gpu:2")):
        out = tmp_path / category
        assert _init(out, "--category", category, *args).returncode == 0
        assert yaml.safe_load((out / "my_fworker.yaml").read_text())["category"] == category
        script = CommonAdapter.from_file(str(out / "my_qadapter.yaml")).get_script_str(str(tmp_path))
        assert (gres in script) if gres else ("--gres" not in script)


@pytest.mark.parametrize("args, message", [
    (["--walltime", "12h"], "walltime '12h'"),
    (["--scheduler", "lsf"], "lsf"),
    (["--gpus", "-1"], "--gpus"),
    (["--category", "gpu a100"], "category 'gpu a100'"),
    (["--runs-per-node", "2", "--runs-per-job", "2", "--nodes", "2"], "--runs-per-node 2 shares nodes among runs, "
                                                                      "so --nodes (per run) must be 1, got 2"),
    (["--runs-per-job", "3", "--runs-per-node", "2"], "--runs-per-job 3 is not a multiple of --runs-per-node 2"),
])
def test_bad_options_are_named_and_nothing_is_written(settings, tmp_path, args, message):
    out = tmp_path / "bad"
    result = _init(out, *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_packed_slurm_job_runs_k_fireworks_on_k_runs_nodes_and_records_its_cap(settings, tmp_path, monkeypatch):
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    monkeypatch.setenv("CRYSTALGEN_VASP_CMD", "srun vasp_std")  # would take all 8 nodes in each of the 4 runs
    out = tmp_path / "vasp"
    result = _init(out, "--category", "cpu-vasp", "--nodes", "2", "--runs-per-job", "4", "--cpus", "64",
                   "--walltime", "10:00:00", "--max-queued", "5")
    assert result.returncode == 0, result.stderr
    script = CommonAdapter.from_file(str(out / "my_qadapter.yaml")).get_script_str(str(tmp_path))
    assert "#SBATCH --nodes=8\n#SBATCH --ntasks-per-node=1\n#SBATCH --cpus-per-task=64" in script
    assert f"crystalgen-rlaunch -c {out} multi 4 --timeout {int(10 * 3600 * 0.9)}\n" in script
    assert "#SBATCH --job-name=crystalgen-cpu-vasp" in script and "#SBATCH --time=10:00:00" in script
    reserve = CommonAdapter.from_file(str(out / "my_qadapter_reserve.yaml")).get_script_str(str(tmp_path))
    assert "#SBATCH --nodes=2\n" in reserve and "singleshot" in reserve  # one firework: one run's nodes
    assert yaml.safe_load((out / "crystalgen_launch.yaml").read_text()) == {
        "category": "cpu-vasp", "job_name": "crystalgen-cpu-vasp", "max_queued": 5, "runs_per_job": 4}
    assert "packing: each job runs 4 fireworks side by side on 8 node(s); each VASP run must take only its share " \
           "(2 node(s)), e.g. vasp_cmd: srun --exclusive --nodes 2 --ntasks <ranks> vasp_std" in result.stdout
    assert "warning: vasp_cmd 'srun vasp_std' would take the whole allocation in each of the 4 runs" in result.stderr


def test_runs_sharing_nodes_ask_for_fewer_nodes(settings, tmp_path):
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    out = tmp_path / "pbs"
    result = _init(out, "--scheduler", "pbs", "--category", "cpu", "--runs-per-job", "4", "--runs-per-node", "2",
                   "--cpus", "32", "--walltime", "01:00:00")
    assert result.returncode == 0, result.stderr
    script = CommonAdapter.from_file(str(out / "my_qadapter.yaml")).get_script_str(str(tmp_path))
    assert "#PBS -l select=2:ncpus=64\n" in script and "#PBS -N crystalgen-cpu\n" in script
    assert "multi 4 --timeout 3240" in script and "warning" not in result.stderr  # no vasp_cmd configured here


@pytest.mark.parametrize(("scheduler", "vasp_cmd", "takes_its_share"), [
    ("slurm", "srun --exclusive --nodes 2 --ntasks 256 vasp_std", True),
    ("slurm", "srun --exact -N2 -n256 vasp_std", True),
    ("slurm", "srun --exclusive vasp_std", False),  # no size: the step takes every task of the job
    ("slurm", "mpirun -np 128 vasp_std", False),
    ("pbs", "mpiexec -hostfile hosts.txt -n 64 vasp_std", True),
    ("pbs", "mpiexec -n 64 vasp_std", False),
])
def test_packing_warning_names_a_vasp_cmd_that_takes_the_whole_allocation(scheduler, vasp_cmd, takes_its_share):
    from crystalgen.settings import Settings
    from hpc.packing import packing_advice
    from hpc.templates import ClusterOptions

    _, warning = packing_advice(ClusterOptions(scheduler=scheduler, runs_per_job=2), Settings(vasp_cmd=vasp_cmd))
    assert (warning is None) == takes_its_share, warning


def test_env_without_a_value_is_refused(tmp_path):
    result = _init(tmp_path / "cfg", "--env", "MATGL_BACKEND")
    assert result.returncode == 1 and "--env 'MATGL_BACKEND': use KEY=VALUE" in result.stderr + result.stdout
    assert not (tmp_path / "cfg").exists()


# what a user may type raw into a URI's password (pymongo needs only :/?#[]@ escaped)
HOSTILE = "it's a `touch tick` $(touch dollar) \"q\" pa ss;touch semi"


def _run_pre_rocket(pre_rocket: str, cwd, printed: list[str]) -> list[str]:
    """Run the job's environment set-up in bash (``module`` stubbed) and return the named variables."""
    stub = 'module() { printf "%s\\n" "$@" > "$HOME/module-args"; }\n'
    dump = "\n" + " ".join(["printf '%s\\0'", *[f'"${{{name}}}"' for name in printed]])
    done = subprocess.run(["bash", "-c", stub + pre_rocket + dump], cwd=cwd, capture_output=True, timeout=30,
                          env={"PATH": os.environ["PATH"], "HOME": str(cwd.parent)})
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().split("\0")[:-1]


def test_hostile_values_stay_data_in_the_job_and_secrets_are_owner_only(tmp_path, monkeypatch):
    from fireworks import LaunchPad
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    from crystalgen.settings import Settings
    from hpc.templates import ClusterOptions, render_cluster_files

    markers = tmp_path / "markers"  # the job runs here: any command that executes leaves a file
    markers.mkdir()
    password = HOSTILE
    uri = f"mongodb://crystalgen:{password}@db.example.org:27017/?authSource=admin"
    vasp_cmd = HOSTILE.replace("it's", "srun vasp_std")
    venv = tmp_path / "venv $(touch dollar) it's"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("export ACTIVATED=yes\n")
    monkeypatch.setenv("CRYSTALGEN_CONFIG", str(tmp_path / "none.yaml"))
    settings = Settings(vasp_cmd=vasp_cmd, database="db'name", mongodb_uri=uri)
    options = ClusterOptions(modules=["cuda/12.4 $(touch x)"], venv=str(venv), env={"EXTRA": password})

    previous = os.umask(0o022)
    try:
        paths = render_cluster_files(options, settings, uri, tmp_path / "cfg")
    finally:
        os.umask(previous)

    for kind in ("launchpad", "qadapter", "env"):
        assert paths[kind].stat().st_mode & 0o777 == 0o600, kind
    assert password not in paths["qadapter"].read_text()  # the job script only sources the 0600 env file
    assert LaunchPad.from_file(str(paths["launchpad"])).host == uri

    qadapter = CommonAdapter.from_file(str(paths["qadapter"]))
    assert qadapter["pre_rocket"] in qadapter.get_script_str(str(tmp_path))  # FireWorks dropped no line
    names = ["CRYSTALGEN_MONGODB_URI", "CRYSTALGEN_VASP_CMD", "ATOMATE2_VASP_CMD", "CRYSTALGEN_DATABASE",
             "EXTRA", "ACTIVATED"]
    values = _run_pre_rocket(qadapter["pre_rocket"], markers, names)
    assert values == [uri, vasp_cmd, vasp_cmd, "db'name", password, "yes"]
    assert (tmp_path / "module-args").read_text() == "load\ncuda/12.4 $(touch x)\n"
    assert list(markers.iterdir()) == []


def test_a_value_fireworks_would_drop_is_refused_before_writing(tmp_path, monkeypatch):
    from crystalgen.settings import Settings
    from hpc.templates import ClusterOptions, TemplateError, render_cluster_files

    monkeypatch.setenv("CRYSTALGEN_CONFIG", str(tmp_path / "none.yaml"))
    with pytest.raises(TemplateError, match=r"--venv .* contains '\$\$'"):
        render_cluster_files(ClusterOptions(venv="/opt/$$venv"), Settings(), "mongodb://h/", tmp_path / "cfg")
    assert not (tmp_path / "cfg").exists()
