"""Sampling throughput and quality: DDPM, DDIM and CFM at 100 steps, DDIM and CFM at 20 steps.

Run: ``python benchmarks/sampling.py [--cfm CKPT] [--diffusion CKPT] [--dataset FILE]
[--n-conditions 256] [--batch-size 256]``. Every configuration samples the same held-out
conditions (the checkpoint's own validation split) in batches of 256 on the CPU and, when
available, on CUDA; structures/s counts the whole path a user pays for (network passes, decoding,
validity checks). The match rate is StructureMatcher's against the true structures. Speed is
also given relative to DDPM-100 on the same device in the same run, which is what carries over
between machines.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from crystalgen.checkpoint import load_method
from crystalgen.evaluate import held_out
from crystalgen.metrics import match_rate
from crystalgen.sample import DEFAULT_CHECKPOINT, sample_structures

ASSETS = Path(__file__).resolve().parents[1] / "crystalgen" / "assets"
DEFAULT_DIFFUSION = ASSETS / "checkpoints" / "demo-ddpm.pt"
DEFAULT_DATASET = ASSETS / "datasets" / "perov_5_val.jsonl.gz"

# (label, which checkpoint, method name, steps)
RUNS = [
    ("DDPM", "diffusion", "ddpm", 100),
    ("DDIM", "diffusion", "ddim", 100),
    ("CFM", "cfm", None, 100),
    ("DDIM", "diffusion", "ddim", 20),
    ("CFM", "cfm", None, 20),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfm", type=Path, default=DEFAULT_CHECKPOINT, help="checkpoint trained with cfm-n or cfm-u")
    parser.add_argument("--diffusion", type=Path, default=DEFAULT_DIFFUSION, help="checkpoint trained with ddpm/ddim")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--split", default="val")
    parser.add_argument("--n-conditions", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated; unavailable ones are skipped")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    console = Console(width=160)
    checkpoints = {"cfm": args.cfm, "diffusion": args.diffusion}
    for kind, path in checkpoints.items():
        if not path.is_file():
            console.print(f"[yellow]no {kind} checkpoint at {path}: its rows are skipped")
    if not args.dataset.is_file():
        raise SystemExit(f"dataset {args.dataset} not found; the demo checkpoints were trained on perov_5 val:\n"
                         f"  crystalgen data import cdvae /work/shared/data/cdvae/perov_5/val.csv {args.dataset}")
    available = [p for p in checkpoints.values() if p.is_file()]
    if not available:
        raise SystemExit("no checkpoint to benchmark: pass --cfm and/or --diffusion")
    conditions, targets = held_out(available[0], args.dataset, args.split,
                                   args.n_conditions, log=lambda _: None)
    devices = [d for d in args.devices.split(",") if d == "cpu" or (d.startswith("cuda") and torch.cuda.is_available())]

    table = Table(title=f"Sampling {len(conditions)} held-out conditions ({args.split} split of {args.dataset.name}), "
                        f"batch {args.batch_size}")
    for column in ("device", "method", "steps", "network evals", "seconds", "structures/s", "vs DDPM-100", "valid", "match rate"):
        table.add_column(column, justify="right" if column not in ("device", "method") else "left")
    for device in devices:
        baseline = None
        for label, kind, method, steps in RUNS:
            path = checkpoints[kind]
            if not path.is_file():
                continue
            loaded = load_method(path, method=method)
            evals = steps * (2 if loaded.config.method.solver == "midpoint" and kind == "cfm" else 1)
            sample_structures(path, conditions[:2], method=method, steps=2, device=device)  # warm-up
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            samples = sample_structures(path, conditions, method=method, steps=steps, device=device,
                                        batch_size=args.batch_size)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            rate = len(samples) / seconds
            baseline = baseline or (rate if label == "DDPM" else None)
            predicted = [s.pymatgen for s in samples]
            matched = match_rate(predicted, targets).rate
            table.add_row(device, f"{label} ({loaded.config.method.name})", str(steps), str(evals), f"{seconds:.1f}",
                          f"{rate:.1f}", f"{rate / baseline:.1f}x" if baseline else "-",
                          f"{sum(p is not None for p in predicted) / len(predicted):.0%}", f"{matched:.1%}")
            console.print(f"done: {device} {label}-{steps}")
    console.print(table)


if __name__ == "__main__":
    main()
