"""``crystalgen hpc check DIR`` with stand-in scheduler commands (the real Slurm: test_slurm_qlaunch.py)."""

from __future__ import annotations

import pytest
import yaml

from hpc.scheduler_check import SchedulerCheckError, check_config_dir


def _config(tmp_path, **qadapter):
    config = tmp_path / "fw"
    config.mkdir()
    (config / "my_qadapter.yaml").write_text(yaml.safe_dump({"_fw_name": "CommonAdapter", **qadapter}))
    return config


def _commands(tmp_path, monkeypatch, **scripts):
    """Put executables NAME (shell bodies) first on PATH; the other scheduler commands succeed silently."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "squeue", "sinfo", "qsub", "qstat"):
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + scripts.get(name, "exit 0") + "\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


@pytest.mark.parametrize(("sinfo", "qadapter", "message"), [
    ("echo 'debug*|up|2|gpu:4'", {"gpus": 1}, "Slurm partition 'debug' is up (2 node(s), gres gpu:4)"),
    ("echo 'debug*|up|2|(null)'; echo 'gpu|up|1|gpu:4'", {"gpus": 2},
     "Slurm partition 'debug' has no GPUs (no gres/gpu on its nodes) but the worker asks for --gres=gpu:2"),
    ("echo 'debug*|up|2|(null)'; echo 'gpu|up|1|gpu:4'", {"gpus": 2, "queue": "gpu"}, "Slurm partition 'gpu' is up"),
    ("echo 'debug*|down|2|(null)'", {}, "Slurm partition 'debug' is down, not up"),
    ("echo 'debug|up|2|(null)'", {}, "Slurm has no default partition"),
    ("echo 'slurm_load_partitions: Unable to contact slurm controller' >&2; exit 1", {},
     "the Slurm controller does not answer: slurm_load_partitions: Unable to contact slurm controller"),
    ("exec sleep 30", {}, "`sinfo --noheader --format=%P|%a|%D|%G` did not answer within 1 s"),
])
def test_slurm_answers(tmp_path, monkeypatch, sinfo, qadapter, message):
    _commands(tmp_path, monkeypatch, sinfo=sinfo)
    config = _config(tmp_path, _fw_q_type="SLURM", **qadapter)
    if "is up" in message:
        assert check_config_dir(config, timeout=1).startswith(message)
    else:
        with pytest.raises(SchedulerCheckError) as caught:
            check_config_dir(config, timeout=1)
        assert str(caught.value).startswith(message)


def test_pbs_and_missing_things(tmp_path, monkeypatch):
    _commands(tmp_path, monkeypatch, qstat="echo 'qstat: Unknown queue workq' >&2; exit 2")
    config = _config(tmp_path, _fw_q_type="PBS", queue="workq")
    with pytest.raises(SchedulerCheckError, match="PBS does not answer `qstat -Q workq`: qstat: Unknown queue"):
        check_config_dir(config)
    with pytest.raises(SchedulerCheckError, match="my_qadapter.yaml does not exist; write the directory with"):
        check_config_dir(tmp_path / "nowhere")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SchedulerCheckError, match="^qsub, qstat not found on PATH"):
        check_config_dir(config)
