"""Memory of the paper-scale UNet (paper.yaml, ~305 M parameters) per training and sampling sample, on the CPU.

Run: ``python benchmarks/paper_model.py [--batches 1,2,4] [--config paper.yaml]``. Each measurement
runs in its own process (peak RSS is a process-wide high-water mark): build the method with Adam,
take one training step (forward, backward, optimiser) at batch B, or one sampling step without
gradients. Memory per sample is the slope of peak RSS over B, fitted in this run; the fixed part
(weights, EMA, Adam moments) is the intercept. Seconds per step are reported for the same run only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

GIB = 1024**3


def measure(config_name: str, batch: int, mode: str) -> dict:
    import torch

    from crystalgen.config import load_config
    from crystalgen.methods import Normalizer, build_method
    from crystalgen.models.unet import UNet1D, count_parameters
    from crystalgen.representation import condition_batch

    torch.manual_seed(0)
    config = load_config(config_name)
    network = UNet1D(config.model)
    method = build_method(config.method, network, Normalizer())
    z = torch.zeros(batch, 64, dtype=torch.int16)
    z[:, :8] = torch.tensor([5, 5, 5, 5, 5, 5, 73, 74])
    batch_dict = condition_batch(z, [191] * batch, [-0.5] * batch)
    batch_dict["coords_lattice"] = torch.rand(batch, 64, 3)
    ema = {k: v.clone() for k, v in network.state_dict().items()}  # what training holds besides the weights
    started = time.perf_counter()
    if mode == "train":
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
        loss = method(batch_dict)
        loss.backward()
        optimizer.step()
    else:
        with torch.inference_mode():
            method.sample(batch_dict, steps=1)
    seconds = time.perf_counter() - started
    del ema
    return {"batch": batch, "mode": mode, "parameters": count_parameters(network), "seconds": seconds,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="paper.yaml")
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        batch, mode = args.child.split(":")
        print(json.dumps(measure(args.config, int(batch), mode)))
        return
    rows = []
    for mode in ("train", "sample"):
        for batch in [int(b) for b in args.batches.split(",")]:
            out = subprocess.run([sys.executable, __file__, "--config", args.config, "--child", f"{batch}:{mode}"],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(f"{mode} batch {batch}: peak RSS {rows[-1]['peak_rss_gib']:.2f} GiB, {rows[-1]['seconds']:.1f} s", flush=True)
    print(f"parameters: {rows[0]['parameters'] / 1e6:.1f} M")
    for mode in ("train", "sample"):
        pts = [(r["batch"], r["peak_rss_gib"]) for r in rows if r["mode"] == mode]
        slope, intercept = np.polyfit([b for b, _ in pts], [m for _, m in pts], 1)
        print(f"{mode}: {1024 * slope:.0f} MiB per sample + {intercept:.2f} GiB fixed (fit over batches "
              f"{[b for b, _ in pts]})")


if __name__ == "__main__":
    main()
