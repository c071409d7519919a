"""Memory of the paper-scale UNet (paper.yaml, ~305 M parameters) per training and sampling sample, on the CPU.

Run: ``python benchmarks/paper_model.py [--batches 1,2,4,8] [--config paper.yaml] [--rss]``.

By default the memory is *accounted*, not sampled: the network is built and run under torch's
``FakeTensorMode`` (shapes and dtypes only, no arithmetic, seconds on any machine), and every tensor
autograd saves for the backward pass is counted once per storage, the weights apart. The slope of
that over B is the training memory per sample; the fixed part is weights + gradients + two Adam
moments + the EMA copy (20 bytes per float32 parameter).

With ``--rss`` each measurement instead runs for real in its own process (peak RSS is a
process-wide high-water mark): build the method with Adam, take one training step (forward,
backward, optimiser) at batch B, or one sampling step without gradients. Memory per sample is the
slope of peak RSS over B, fitted in this run; the fixed part (weights, EMA, Adam moments) is the
intercept. Seconds per step are reported for the same run only.
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

    torch.manual_seed(0)
    config = load_config(config_name)
    network = UNet1D(config.model)
    method = build_method(config.method, network, Normalizer())
    batch_dict = _example_batch(batch)
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


def account(config_name: str, batches: list[int], fake: bool = True) -> dict:
    """Bytes autograd saves for backward at each batch size: from shapes alone (FakeTensorMode) or, with
    ``fake=False``, from a real forward pass (the check that the fake count is the real one)."""
    import contextlib

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.multiprocessing.reductions import StorageWeakRef

    from crystalgen.config import load_config
    from crystalgen.methods import Normalizer, build_method
    from crystalgen.models.unet import UNet1D, count_parameters

    config = load_config(config_name)
    real_batches = {b: _example_batch(b) for b in batches}  # built outside: condition_batch reads values
    saved_mib = {}
    with FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext():
        torch.manual_seed(0)
        network = UNet1D(config.model)
        weights = {StorageWeakRef(p.untyped_storage()) for p in network.parameters()}
        method = build_method(config.method, network, Normalizer())
        for b, batch_dict in real_batches.items():
            storages: dict = {}

            def pack(t, storages=storages):
                ref = StorageWeakRef(t.untyped_storage())
                if ref not in weights:
                    storages[ref] = t.untyped_storage().nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                method(batch_dict)
            saved_mib[b] = sum(storages.values()) / 2**20
    parameters = count_parameters(network)
    return {"parameters": parameters, "fixed_gib": parameters * 20 / GIB, "saved_mib": saved_mib}


def _example_batch(batch: int) -> dict:
    import torch

    from crystalgen.representation import condition_batch

    z = torch.zeros(batch, 64, dtype=torch.int16)
    z[:, :8] = torch.tensor([5, 5, 5, 5, 5, 5, 73, 74])
    batch_dict = condition_batch(z, [191] * batch, [-0.5] * batch)
    batch_dict["coords_lattice"] = torch.rand(batch, 64, 3)
    return batch_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="paper.yaml")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--rss", action="store_true", help="measure peak RSS of real steps instead (minutes per step)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        batch, mode = args.child.split(":")
        print(json.dumps(measure(args.config, int(batch), mode)))
        return
    if not args.rss:
        batches = [int(b) for b in args.batches.split(",")]
        result = account(args.config, batches)
        for b in batches:
            print(f"batch {b}: {result['saved_mib'][b]:.1f} MiB saved for backward (float32)")
        slope, intercept = np.polyfit(batches, [result["saved_mib"][b] for b in batches], 1)
        print(f"parameters: {result['parameters'] / 1e6:.1f} M; fixed (weights, grads, Adam, EMA): "
              f"{result['fixed_gib']:.2f} GiB")
        print(f"train: {slope:.1f} MiB per sample saved for backward (+{intercept:.1f} MiB); batch 256 would hold "
              f"{result['fixed_gib'] + 256 * slope / 1024:.1f} GiB in float32")
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
