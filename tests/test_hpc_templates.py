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


def test_slurm_gpu_files_load_in_fireworks_and_render_gpus_and_torchrun(settings, tmp_path):
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
    assert 'torchrun --standalone --nnodes=1 --nproc_per_node=4' in script
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
    assert "#PBS -l select=1:ncpus=16:ngpus=2" in script and "--nproc_per_node=2" in script


@pytest.mark.parametrize("args, message", [
    (["--walltime", "12h"], "walltime '12h'"),
    (["--scheduler", "lsf"], "lsf"),
    (["--gpus", "0"], "--gpus"),
])
def test_bad_options_are_named_and_nothing_is_written(settings, tmp_path, args, message):
    out = tmp_path / "bad"
    result = _init(out, *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_env_without_a_value_is_refused(tmp_path):
    result = _init(tmp_path / "cfg", "--env", "MATGL_BACKEND")
    assert result.returncode == 1 and "--env 'MATGL_BACKEND': use KEY=VALUE" in result.stderr + result.stdout
    assert not (tmp_path / "cfg").exists()
