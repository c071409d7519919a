"""``crystalgen train CONFIG.yaml``: train one method, on one process or many (torchrun).

The same command runs single-process or under ``torchrun --nproc_per_node=N``: with
``WORLD_SIZE > 1`` it joins a process group (NCCL on GPUs, Gloo on CPUs), wraps the method in
DistributedDataParallel and gives each process its share of every global batch through a
:class:`~torch.utils.data.DistributedSampler`. Rank 0 validates and writes checkpoints.

Resume is exact: the epoch's sample order is a function of (seed, epoch), the checkpoint stores
the step inside the epoch and every process's RNG states, so a killed run restarted with the
same command continues as if it had never stopped (``checkpoint.pt`` in ``out_dir``).
"""

from __future__ import annotations

import copy
import json
import math
import random
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from crystalgen.checkpoint import CheckpointError, code_version, describe_mismatch, load_checkpoint, save_checkpoint
from crystalgen.config import TrainConfig
from crystalgen.distributed import DistInfo, init_distributed
from crystalgen.methods import Normalizer, build_method
from crystalgen.models.unet import UNet1D
from crystalgen.training_data import TensorSet, load_training_data

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"


# -- processes, devices and precision ----------------------------------------------------------
def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None = full precision. auto: bf16 on Ampere and newer, fp16 on older GPUs, fp32 on CPU."""
    if precision == "fp32" or device.type != "cuda":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


# -- optimisation pieces -----------------------------------------------------------------------
def warmup_cosine(warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class EMA:
    """Exponential moving average of the network weights (what sampling uses)."""

    def __init__(self, network: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(network).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, network: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow.parameters(), network.parameters()):
            s.lerp_(p.detach(), 1 - decay)
        for s, b in zip(self.shadow.buffers(), network.buffers()):
            s.copy_(b)


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": list(np.random.get_state()[1].tolist()) + [int(np.random.get_state()[2])],
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    # a checkpoint loaded with map_location=cuda carries its generator states on the GPU; torch
    # takes them as CPU byte tensors only. CUDA streams are restored when the device count matches.
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
    keys = np.asarray(state["numpy"][:-1], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, int(state["numpy"][-1])))
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- the run -----------------------------------------------------------------------------------
class Stop(Exception):
    """Raised inside the loop to stop early (tests use it to simulate a killed run)."""


def train(
    config: TrainConfig,
    resume: bool = True,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Train ``config``; returns the final checkpoint path. ``on_step(step)`` runs after each step."""
    info = init_distributed("cuda" if config.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    device = pick_device(config.device, info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    say = (log or print) if info.is_main else (lambda _msg: None)
    out_dir = Path(config.out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME

    seed_everything(config.seed + info.rank)
    data = load_training_data(config.data, modification=_is_modification(config), log=say)
    normalizer = fit_normalizer(data.train, data.scalar_key)
    network = UNet1D(config.model).to(device)
    method = build_method(config.method, network, normalizer).to(device)
    ema = EMA(network, config.optim.ema_decay)
    optimizer = torch.optim.Adam(
        network.parameters(), lr=config.optim.lr, betas=config.optim.betas, weight_decay=config.optim.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.optim.warmup_steps, config.max_steps, config.optim.min_lr_ratio)
    )
    amp_dtype = autocast_dtype(config.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    step, metrics = 0, []
    if config.init_from and not (resume and ckpt_path.is_file()):
        _warm_start(network, ema, Path(config.init_from), config)
        say(f"weights initialised from {config.init_from}")
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, map_location=device)
        _check_resumable(state, config, normalizer, ckpt_path)
        network.load_state_dict(state["model"])
        ema.shadow.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, metrics = int(state["step"]), list(state.get("metrics", []))
        rngs = state["rng"]
        if len(rngs) == info.world:
            set_rng_state(rngs[info.rank])
        else:
            say(f"note: checkpoint from {len(rngs)} processes resumed on {info.world}; RNG streams re-seeded")
            seed_everything(config.seed + info.rank + step)
        say(f"resumed from {ckpt_path} at step {step}")

    model = DistributedDataParallel(method, device_ids=[device.index] if device.type == "cuda" else None) if info.world > 1 else method
    local_batch = _local_batch_size(config.optim.batch_size, info.world)
    sampler = DistributedSampler(
        range(len(data.train)), num_replicas=info.world, rank=info.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    steps_per_epoch = max(1, len(sampler) // local_batch)
    if len(sampler) < local_batch:
        raise ValueError(f"{len(data.train)} training structures cannot fill one batch of {config.optim.batch_size}")

    stop_requested = _install_sigterm()
    bar = _progress(progress and info.is_main, config.max_steps, step)
    started, last_loss = time.time(), float("nan")
    try:
        while step < config.max_steps:
            epoch, offset = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)
            order = list(sampler)
            for b in range(offset, steps_per_epoch):
                batch = data.train.batch(order[b * local_batch : (b + 1) * local_batch], device)
                method.train()
                with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext():
                    loss = model(batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.optim.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(network.parameters(), config.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                ema.update(network, step)
                step += 1
                last_loss = _mean_across(loss.detach(), info)
                if bar:
                    bar[0].update(bar[1], completed=step, description=f"loss {last_loss:.4f}")
                if step % config.log_every == 0 or step == config.max_steps:
                    metrics.append({"step": step, "epoch": epoch, "loss": last_loss, "lr": scheduler.get_last_lr()[0],
                                    "elapsed_s": round(time.time() - started, 2)})
                    if not bar:
                        say(f"step {step} epoch {epoch} loss {last_loss:.4f}")
                if config.val_conditions and (step % config.val_every == 0 or step == config.max_steps) and info.is_main:
                    metrics.append(validate(config, ema.shadow, normalizer, data.val, step, device))
                    say(f"step {step}: validation match rate {metrics[-1]['val_match_rate']:.3f}")
                if step % config.checkpoint_every == 0 or step == config.max_steps or stop_requested():
                    _save(ckpt_path, config, normalizer, network, ema, optimizer, scheduler, scaler, step, epoch,
                          metrics, info)
                if on_step:
                    on_step(step)
                if stop_requested():
                    raise Stop(f"stopped by SIGTERM at step {step}; rerun the same command to resume")
                if step >= config.max_steps:
                    break
    finally:
        if bar:
            bar[0].stop()
    if info.is_main:
        (out_dir / METRICS_NAME).write_text("".join(json.dumps(m) + "\n" for m in metrics))
    say(f"done: {step} steps, final loss {last_loss:.4f}, checkpoint {ckpt_path}")
    return ckpt_path


@torch.no_grad()
def validate(config: TrainConfig, network: torch.nn.Module, normalizer: Normalizer, val: TensorSet, step: int, device) -> dict:
    """Sample the first ``val_conditions`` held-out structures and match them to their targets."""
    from crystalgen.metrics import match_rate
    from crystalgen.representation import decode, decode_batch

    method = build_method(config.method, network, normalizer).to(device)
    n = min(config.val_conditions, len(val))
    if n == 0:
        return {"step": step, "val_match_rate": float("nan"), "val_n": 0}
    batch = val.batch(list(range(n)), device)
    generators = [torch.Generator().manual_seed(config.seed * 1_000_003 + i) for i in range(n)]
    predicted = decode_batch(method.sample(batch, steps=config.val_steps, generator=generators).cpu(), batch["elements"].cpu())
    targets = [decode(batch["coords_lattice"][i].cpu(), batch["elements"][i].cpu()) for i in range(n)]
    result = match_rate(predicted, targets, serial=True, timeout=10.0)
    return {"step": step, "val_match_rate": result.rate, "val_n": n, "val_valid": sum(p is not None for p in predicted) / n}


def fit_normalizer(train_set: TensorSet, scalar_key: str) -> Normalizer:
    """Statistics of the training split (modification: initial and target structures together)."""
    structures = train_set.tensors["coords_lattice"]
    if "init_coords_lattice" in train_set.tensors:
        structures = torch.cat([structures, train_set.tensors["init_coords_lattice"]])
    return Normalizer.fit(structures, train_set.tensors[scalar_key])


def _is_modification(config: TrainConfig) -> bool:
    from crystalgen.methods import method_spec

    return method_spec(config.method.name).task == "modification"


def _local_batch_size(global_batch: int, world: int) -> int:
    if global_batch % world:
        raise ValueError(f"batch_size {global_batch} is not divisible by the {world} processes")
    return global_batch // world


def _mean_across(value: torch.Tensor, info: DistInfo) -> float:
    if info.world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world
    return float(value)


def _check_resumable(state: dict, config: TrainConfig, normalizer: Normalizer, path: Path) -> None:
    """Architecture, method and data normalisation must match; run length and logging may change."""
    saved = state["config"]
    current = config.model_dump(mode="json")
    diffs = describe_mismatch({k: saved.get(k) for k in ("model", "method")}, {k: current[k] for k in ("model", "method")})
    if diffs:
        raise CheckpointError(f"{path} was trained with a different configuration:\n  " + "\n  ".join(diffs))
    diffs = describe_mismatch(state["normalizer"], normalizer.to_dict(), "normalizer.")
    if diffs:
        raise CheckpointError(
            f"{path}: the dataset's normalisation statistics differ from the checkpoint's "
            f"(different data or split?):\n  " + "\n  ".join(diffs[:5])
        )


def _warm_start(network: torch.nn.Module, ema: EMA, path: Path, config: TrainConfig) -> None:
    """Start from another run's (EMA) weights: fine-tuning on new data or a new frame costs fewer steps."""
    state = load_checkpoint(path)
    diffs = describe_mismatch({"model": state["config"].get("model")}, {"model": config.model_dump(mode="json")["model"]})
    if diffs:
        raise CheckpointError(f"init_from {path} has another architecture:\n  " + "\n  ".join(diffs))
    weights = state.get("ema") or state["model"]
    weights = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
    network.load_state_dict(weights)
    ema.shadow.load_state_dict(weights)


def _save(path, config, normalizer, network, ema, optimizer, scheduler, scaler, step, epoch, metrics, info) -> None:
    rngs = [rng_state()]
    if info.world > 1:
        gathered: list = [None] * info.world
        dist.all_gather_object(gathered, rngs[0])
        rngs = gathered
    if info.is_main:
        save_checkpoint(path, {
            "config": config.model_dump(mode="json"),
            "normalizer": normalizer.to_dict(),
            "model": network.state_dict(),
            "ema": ema.shadow.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "step": step,
            "epoch": epoch,
            "world_size": info.world,
            "rng": rngs,
            "metrics": metrics,
            "code_version": code_version(),
        })
    if info.world > 1:
        dist.barrier()


def _install_sigterm() -> Callable[[], bool]:
    """SIGTERM (batch-system pre-emption) -> save at the end of this step and stop cleanly."""
    flag = {"stop": False}
    try:
        signal.signal(signal.SIGTERM, lambda *_: flag.__setitem__("stop", True))
    except ValueError:  # not the main thread
        pass
    return lambda: flag["stop"]


def _progress(enabled: bool, total: int, completed: int):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    task = bar.add_task("training", total=total, completed=completed)
    bar.start()
    return bar, task
