"""Training: checkpoints, exact resume after an interruption, configuration errors, torchrun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from crystalgen.checkpoint import CheckpointError, export_checkpoint, load_checkpoint, load_method
from crystalgen.config import ConfigError, load_config
from crystalgen.train import Stop, autocast_dtype, train, warmup_cosine

from model_helpers import tiny_config, write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.jsonl.gz", n_perov=40)


def _weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def test_interrupted_run_resumes_from_its_checkpoint_exactly(dataset, tmp_path):
    straight = train(tiny_config(dataset, tmp_path / "a"), progress=False, log=lambda _: None)

    def kill_at_3(step: int) -> None:
        if step == 3:  # mid-epoch (4 steps per epoch), one step after the last checkpoint (step 2)
            raise Stop("simulated kill")

    with pytest.raises(Stop):
        train(tiny_config(dataset, tmp_path / "b"), progress=False, on_step=kill_at_3, log=lambda _: None)
    saved = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert saved["step"] == 2 and saved["epoch"] == 0

    messages, steps = [], []
    resumed = train(tiny_config(dataset, tmp_path / "b"), progress=False, on_step=steps.append, log=messages.append)
    assert any("resumed" in m and "step 2" in m for m in messages)
    assert steps == [3, 4, 5, 6]
    final = load_checkpoint(resumed)
    assert final["step"] == 6 and final["epoch"] == 1
    for key, value in _weights(straight).items():
        torch.testing.assert_close(final["model"][key], value, rtol=0, atol=0, msg=f"{key} differs after resume")


def test_checkpoint_carries_config_normalisation_and_provenance(dataset, tmp_path):
    path = train(tiny_config(dataset, tmp_path, max_steps=2), progress=False, log=lambda _: None)
    state = load_checkpoint(path)
    assert state["config"]["method"]["name"] == "cfm-n"
    assert set(state["normalizer"]) == {"lattice_mean", "lattice_std", "scalar_mean", "scalar_std"}
    assert {"optimizer", "scheduler", "scaler", "ema", "rng", "code_version"} <= set(state)
    slim = export_checkpoint(path, tmp_path / "slim.pt")
    assert slim.stat().st_size < path.stat().st_size
    loaded = load_method(slim)
    assert loaded.step == 2 and loaded.method.name == "cfm-n"


def test_resume_with_another_architecture_is_refused(dataset, tmp_path):
    train(tiny_config(dataset, tmp_path, max_steps=2), progress=False, log=lambda _: None)
    with pytest.raises(CheckpointError, match="model.model_channels"):
        train(tiny_config(dataset, tmp_path, model__model_channels=16), progress=False, log=lambda _: None)


def test_resume_on_different_data_is_refused(dataset, tmp_path):
    train(tiny_config(dataset, tmp_path, max_steps=2), progress=False, log=lambda _: None)
    with pytest.raises(CheckpointError, match="normalisation"):
        train(tiny_config(dataset, tmp_path, data__split_seed=5), progress=False, log=lambda _: None)


def test_corrupt_checkpoint_and_mismatched_weights_give_clear_errors(dataset, tmp_path):
    path = train(tiny_config(dataset, tmp_path, max_steps=1), progress=False, log=lambda _: None)
    state = torch.load(path, weights_only=True)
    state["config"]["model"]["model_channels"] = 16
    torch.save(state, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not match the network"):
        load_method(tmp_path / "mismatch.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_method(tmp_path / "junk.pt")


def test_precision_and_learning_rate_schedule():
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) is None
    f = warmup_cosine(10, 110, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_bad_config_file_names_the_field(tmp_path, dataset):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"data": {"dataset": str(dataset)}, "optim": {"lr": -1}, "method": {"name": "gan"}}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "optim.lr" in str(info.value) and "gan" in str(info.value)
    path.write_text(yaml.safe_dump({"data": {"dataset": "missing.jsonl"}}))
    with pytest.raises(ConfigError, match="missing.jsonl not found"):
        load_config(path)


@pytest.mark.parametrize("name", ["demo.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name, dataset):
    config = load_config(name, {"data.dataset": str(dataset)})
    assert config.seed == 42 and config.optim.betas == (0.9, 0.999)
    if name == "paper.yaml":
        assert (config.model.model_channels, config.model.channel_mult, config.model.num_res_blocks) == (128, (1, 2, 4, 8), 7)
        assert config.optim.lr == 1e-4 and config.optim.batch_size == 256 and config.optim.warmup_steps == 500


def test_cli_train_reports_errors_without_traceback(tmp_path):
    from typer.testing import CliRunner

    from crystalgen.cli import _register_core, app

    _register_core()
    result = CliRunner().invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output


def _write_config(dataset: Path, out_dir: Path, path: Path, **overrides) -> Path:
    cfg = tiny_config(dataset, out_dir, **overrides).model_dump(mode="json")
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_killed_training_process_resumes(dataset, tmp_path):
    """SIGKILL a real `crystalgen train` after its first checkpoint; the rerun finishes the run."""
    config = _write_config(dataset, tmp_path / "run", tmp_path / "c.yaml", max_steps=60, checkpoint_every=5)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(VENV_BIN / "crystalgen"), "train", str(config), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved_step = load_checkpoint(ckpt)["step"]
    assert 0 < saved_step < 60
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resumed from {ckpt} at step {saved_step}" in done.stdout
    assert load_checkpoint(ckpt)["step"] == 60


@pytest.mark.slow
def test_torchrun_two_processes_train_the_same_run(dataset, tmp_path):
    """Same command on 2 gloo processes: global batch split in two, rank 0 checkpoints, resume works."""
    config = _write_config(dataset, tmp_path / "ddp", tmp_path / "c.yaml", max_steps=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "crystalgen",
           "train", str(config), "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert state["step"] == 4 and state["world_size"] == 2 and len(state["rng"]) == 2
    # continue the same run on two processes
    _write_config(dataset, tmp_path / "ddp", config, max_steps=6)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "at step 4" in done.stdout
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["step"] == 6


def test_init_from_starts_a_new_run_from_another_runs_weights(dataset, tmp_path):
    first = train(tiny_config(dataset, tmp_path / "a", max_steps=2), progress=False, log=lambda _: None)
    messages = []
    second = train(tiny_config(dataset, tmp_path / "b", max_steps=1, init_from=str(first), optim__lr=1e-9),
                   progress=False, log=messages.append)
    assert any("initialised from" in m for m in messages)
    start, after = load_checkpoint(first)["ema"], load_checkpoint(second)["model"]
    for key, value in start.items():  # one step at lr 1e-9 leaves the warm-started weights in place
        torch.testing.assert_close(after[key], value, rtol=0, atol=1e-6)
    with pytest.raises(CheckpointError, match="another architecture"):
        train(tiny_config(dataset, tmp_path / "c", init_from=str(first), model__model_channels=16), progress=False,
              log=lambda _: None)


@pytest.mark.slow
def test_paper_configuration_trains_a_few_steps_on_cpu(tmp_path):
    """The shipped paper.yaml (~305 M parameters) as a user runs it: two CPU steps, a checkpoint that resumes.

    About 6.3 GiB peak memory at batch 1 on the CPU (benchmarks/paper_model.py measures it per sample).
    """
    out = tmp_path / "paper"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    cmd = [str(VENV_BIN / "crystalgen"), "train", "paper.yaml", "--no-progress", "--set", f"out_dir={out}",
           "--set", "device=cpu", "--set", "optim.batch_size=2", "--set", "optim.warmup_steps=1",
           "--set", "val_conditions=0", "--set", "data.max_train_records=16", "--set", "max_steps=2"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 2 and state["config"]["model"]["num_res_blocks"] == 7
    assert 2.9e8 < sum(v.numel() for v in state["model"].values()) < 3.2e8
    done = subprocess.run([*cmd[:-1], "max_steps=3"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0 and "at step 2" in done.stdout, done.stderr[-3000:]


def test_memory_accounting_from_shapes_equals_a_real_forward_pass():
    """benchmarks/paper_model.py states paper.yaml's memory per sample from FakeTensorMode shapes; on the demo
    network the same count from a real forward pass must agree byte for byte, and grow with the batch."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_model.py"
    spec = importlib.util.spec_from_file_location("paper_model", path)
    paper_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paper_model)
    fake = paper_model.account("demo.yaml", [1, 2, 4])
    real = paper_model.account("demo.yaml", [1, 2, 4], fake=False)
    assert fake["saved_mib"] == pytest.approx(real["saved_mib"], rel=1e-9)
    assert fake["saved_mib"][1] < fake["saved_mib"][2] < fake["saved_mib"][4]
    assert fake["fixed_gib"] == pytest.approx(fake["parameters"] * 20 / 1024**3)
