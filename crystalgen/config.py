"""Training configuration: one pydantic model, read from YAML, stored inside every checkpoint.

The defaults are the paper's hyper-parameters (Adam 1e-4, betas (0.9, 0.999), batch 256,
500 warm-up steps then cosine decay, seed 42, the ~305 M-parameter UNet). The shipped
``assets/configs/demo.yaml`` shrinks the network and the run so it trains on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crystalgen.layout import MAX_SITES
from crystalgen.methods import METHODS, MethodConfig, method_spec
from crystalgen.models.unet import UNetConfig

ASSETS = Path(__file__).parent / "assets"
CONFIG_DIR = ASSETS / "configs"
DATASET_DIR = ASSETS / "datasets"
CHECKPOINT_DIR = ASSETS / "checkpoints"


class ConfigError(ValueError):
    """A training configuration file is missing, malformed or inconsistent."""


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(description="crystalgen dataset file (.jsonl or .jsonl.gz); relative paths are "
                          "looked up next to the config file, then in crystalgen/assets/datasets")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of formulas held out for validation")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of formulas held out for testing")
    split_seed: int = 0
    max_train_records: int | None = Field(None, ge=1, description="cap on training structures (demo runs)")
    max_atoms: int = Field(MAX_SITES, ge=1, le=MAX_SITES)
    frame: Literal["as-given", "standard-primitive"] = Field(
        "as-given", description="cell each crystal is encoded in: as stored, or spglib's standard primitive cell of its "
        "space group (one cell choice and origin per group; sampling then imposes the requested group)")


class OptimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(256, ge=1, description="global batch (divided among DDP processes)")
    warmup_steps: int = Field(500, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine decay floor as a fraction of lr")
    grad_clip: float | None = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)


class TrainConfig(BaseModel):
    """Everything that determines a training run (and thus what a checkpoint contains)."""

    model_config = ConfigDict(extra="forbid")

    method: MethodConfig = MethodConfig()
    model: UNetConfig = UNetConfig()
    data: DataConfig
    optim: OptimConfig = OptimConfig()
    max_steps: int = Field(100_000, ge=1, description="optimizer steps in total (epochs follow from the data)")
    seed: int = 42
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="auto: bf16 on Ampere+ GPUs, fp16 with loss scaling on older GPUs, fp32 on CPU"
    )
    device: str = Field("auto", description="auto, cpu, cuda (DDP uses cuda:LOCAL_RANK)")
    out_dir: Path = Field(Path("runs/crystalgen"), description="checkpoints and metrics go here")
    init_from: Path | None = Field(
        None, description="checkpoint (full or exported) whose weights start a new run: same architecture, any data "
        "or method of the same network width; ignored when out_dir already holds a checkpoint to resume")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (also written at the end)")
    val_every: int = Field(1000, ge=1, description="steps between validation match-rate runs")
    val_conditions: int = Field(64, ge=0, description="validation structures sampled per validation (0: off)")
    val_steps: int | None = Field(None, ge=1, description="sampling steps for validation (default: method's)")
    log_every: int = Field(50, ge=1)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: MethodConfig) -> MethodConfig:
        method_spec(value.name)
        return value

    def model_post_init(self, __context) -> None:
        wanted = METHODS[self.method.name].in_channels
        if self.model.in_channels != wanted:
            # the network's input width follows from the method; set it rather than make users do so
            object.__setattr__(self, "model", self.model.model_copy(update={"in_channels": wanted}))


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML training config; relative dataset/out_dir paths resolve against the file's folder."""
    path = Path(path)
    if not path.is_file():
        builtin = CONFIG_DIR / path.name
        if path.parent == Path(".") and builtin.is_file():
            path = builtin
        else:
            raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping")
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid training config:\n{_describe(exc)}") from exc
    config.data.dataset = resolve_dataset(config.data.dataset, path.parent)
    if config.init_from is not None:
        config.init_from = resolve_checkpoint(config.init_from, path.parent)
    return config


def resolve_checkpoint(checkpoint: Path, base: Path | None = None) -> Path:
    """A checkpoint path as given, next to the config, or among the shipped checkpoints."""
    candidates = [checkpoint] if checkpoint.is_absolute() else [Path.cwd() / checkpoint, *([base / checkpoint] if base else []),
                                                              CHECKPOINT_DIR / checkpoint]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError(f"checkpoint {checkpoint} not found (looked in: {', '.join(str(c.parent) for c in candidates)})")


def resolve_dataset(dataset: Path, base: Path | None = None) -> Path:
    candidates = [dataset] if dataset.is_absolute() else [Path.cwd() / dataset, *( [base / dataset] if base else []), DATASET_DIR / dataset]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError(f"dataset {dataset} not found (looked in: {', '.join(str(c.parent) for c in candidates)})")


def _describe(exc: ValidationError) -> str:
    return "\n".join(f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
