"""Throughput of the ML core: encoding, batching and the match-rate metric.

Run standalone: ``python benchmarks/core.py [--n-encode 400] [--n-match 120]``. Numbers depend
on the machine; the 2-worker match rate is reported as a speed-up over 1 worker measured in the
same run.
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings
from pathlib import Path

import numpy as np
from distributed import Client, LocalCluster
from pymatgen.core import Structure
from rich.console import Console
from rich.table import Table

from crystalgen.metrics import match_rate
from crystalgen.representation import decode, encode, encode_batch

CDVAE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cdvae"  # shared/ beside the checkout
if not CDVAE.is_dir():
    CDVAE = Path("/work/shared/data/cdvae")


def load_structures(n: int) -> list[Structure]:
    csv.field_size_limit(2**31 - 1)
    structures: list[Structure] = []
    for name in ("carbon_24", "perov_5"):
        with open(CDVAE / name / "test.csv", newline="") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _, row in zip(range(n // 2), csv.DictReader(fh)):
                structures.append(Structure.from_str(row["cif"], fmt="cif"))
    return structures


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-encode", type=int, default=400)
    parser.add_argument("--n-match", type=int, default=120)
    args = parser.parse_args()

    structures = load_structures(max(args.n_encode, args.n_match))
    encode_set = structures[: args.n_encode]
    encoded = []
    rows = []
    t = timed(lambda: encoded.extend(encode(s) for s in encode_set))
    rows.append(("encode (space group from SpacegroupAnalyzer)", len(encode_set), t))
    sg = [e.spacegroup_number for e in encoded]
    t = timed(lambda: [encode(s, spacegroup=n) for s, n in zip(encode_set, sg)])
    rows.append(("encode (space group given)", len(encode_set), t))
    t = timed(lambda: encode_batch(encoded))
    rows.append(("encode_batch (stack to torch)", len(encoded), t))
    t = timed(lambda: [decode(e.coords_lattice, e.elements) for e in encoded])
    rows.append(("decode", len(encoded), t))

    # Match rate on a realistic mix: half exact copies, half perturbed (mostly misses).
    rng = np.random.default_rng(0)
    targets = structures[: args.n_match]
    predicted = []
    for i, s in enumerate(targets):
        p = s.copy()
        if i % 2:
            p.perturb(float(rng.uniform(0.1, 1.0)))
        predicted.append(p)
    t = timed(lambda: match_rate(predicted, targets, serial=True))
    rows.append(("match_rate serial (in-process)", len(targets), t))
    results = {}
    for workers in (1, 2):
        start = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
            with Client(cluster) as client:
                client.wait_for_workers(workers)
                rows.append((f"dask LocalCluster start, {workers} worker(s)", 1, time.perf_counter() - start))
                t = timed(lambda: results.setdefault(workers, match_rate(predicted, targets, client=client)))
                rows.append((f"match_rate dask, {workers} worker(s)", len(targets), t))
    assert [p.matched for p in results[1].pairs] == [p.matched for p in results[2].pairs]

    table = Table(title="crystalgen core throughput")
    table.add_column("operation")
    table.add_column("items", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("items/s", justify="right")
    for name, n, seconds in rows:
        table.add_row(name, str(n), f"{seconds:.2f}", f"{n / seconds:.1f}")
    console = Console()
    console.print(table)
    one, two = rows[-3][2], rows[-1][2]
    console.print(f"match rate {results[2].rate:.3f}; dask speed-up 2 vs 1 worker: {one / two:.2f}x")


if __name__ == "__main__":
    main()
