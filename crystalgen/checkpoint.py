"""Checkpoints: one torch file that holds everything needed to resume or to sample.

Contents: format tag and version, the training config, the normalisation statistics, network and
EMA weights, optimiser / scheduler / loss-scaler state, step and epoch, every process's RNG
states, the metrics so far and the code version. Writes are atomic (temporary file in the same
folder, fsync, ``os.replace``), so a run killed while saving keeps its previous checkpoint.
Loading uses ``torch.load(weights_only=True)``: a checkpoint cannot execute code.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

FORMAT = "crystalgen-checkpoint"
FORMAT_VERSION = 1
INFERENCE_KEYS = ("format", "version", "config", "normalizer", "model", "step", "epoch", "metrics", "code_version")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the config / data it is used with."""


def code_version() -> str:
    """Package version plus the git commit when running from a checkout (for provenance only)."""
    try:
        pkg = version("crystalgen")
    except PackageNotFoundError:
        pkg = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{pkg}+{commit}" if commit else pkg


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save({"format": FORMAT, "version": FORMAT_VERSION, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"{path} is not a readable checkpoint: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a crystalgen checkpoint")
    if state.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} != {FORMAT_VERSION}")
    missing = [k for k in ("config", "normalizer", "model") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, half: bool = True) -> Path:
    """A sampling-only copy: EMA weights (optionally float16) without optimiser or RNG state."""
    state = load_checkpoint(src)
    weights = state.get("ema") or state["model"]
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    slim = {k: state[k] for k in INFERENCE_KEYS if k in state and k not in ("format", "version")}
    slim["model"] = weights
    return save_checkpoint(dst, slim)


def describe_mismatch(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two nested dicts."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += describe_mismatch(a, b, name + ".")
        elif _normalise(a) != _normalise(b):
            diffs.append(f"{name}: checkpoint {a!r} != current {b!r}")
    return diffs


def _normalise(value):
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, float):
        return round(value, 5)
    return value


@dataclass
class LoadedModel:
    """A method ready to sample, with the provenance it came from."""

    method: Any  # crystalgen.methods.Method
    config: Any  # crystalgen.config.TrainConfig
    step: int
    path: Path
    code_version: str


def load_method(path: str | os.PathLike, method: str | None = None, device: str | torch.device = "cpu", ema: bool = True) -> LoadedModel:
    """Build the network and method a checkpoint describes and load its (EMA) weights.

    ``method`` picks a sampler of the same family (e.g. 'ddim' for a network trained as 'ddpm').
    A checkpoint whose weights do not fit its own config raises :class:`CheckpointError`.
    """
    from crystalgen.config import TrainConfig
    from crystalgen.methods import Normalizer, build_method
    from crystalgen.models.unet import UNet1D

    path = Path(path)
    state = load_checkpoint(path)
    try:
        config = TrainConfig.model_validate(state["config"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: stored config is invalid for this version of crystalgen: {exc}") from exc
    network = UNet1D(config.model)
    weights = state.get("ema") if ema and state.get("ema") else state["model"]
    try:
        network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the network its config describes: {exc}") from exc
    built = build_method(config.method, network, Normalizer.from_dict(state["normalizer"]), name=method)
    built.to(device).eval()
    return LoadedModel(built, config, int(state.get("step", 0)), path, str(state.get("code_version", "")))
