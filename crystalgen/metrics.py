"""Match rate: how many generated structures StructureMatcher identifies with their target.

Each (predicted, target) pair is matched with ``StructureMatcher(ltol=0.2, stol=0.3,
angle_tol=5)`` (paper §6). Pairs run in parallel on dask workers (a ``LocalCluster`` of worker
processes unless a client or scheduler address is given) or serially for small inputs. A pair
gets ``timeout`` seconds: StructureMatcher can stall on pathological generated lattices, and
one stalled pair must not hold up an evaluation. Missing (``None``) or degenerate predictions
(non-finite values, ~zero volume) are misses whose ``reason`` says why.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

MATCHER_KWARGS = {"ltol": 0.2, "stol": 0.3, "angle_tol": 5}
#: Below this many pairs (and with no client given) matching runs in-process.
SERIAL_BELOW = 32
MIN_VOLUME = 1e-3  # Å^3


@dataclass(frozen=True)
class PairResult:
    matched: bool
    rms: float | None = None  # normalised RMS displacement from StructureMatcher.get_rms_dist
    reason: str = ""  # why it is a miss: "no match", "timeout", "no structure", "degenerate ...", "error: ..."


@dataclass(frozen=True)
class MatchResult:
    rate: float
    pairs: list[PairResult] = field(default_factory=list)

    @property
    def n_matched(self) -> int:
        return sum(p.matched for p in self.pairs)

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.pairs:
            if not p.matched:
                counts[p.reason] = counts.get(p.reason, 0) + 1
        return counts


def _degenerate(structure: Structure | None) -> str:
    if structure is None:
        return "no structure"
    matrix = structure.lattice.matrix
    if not (np.isfinite(matrix).all() and np.isfinite(structure.frac_coords).all()):
        return "degenerate: non-finite values"
    volume = abs(np.linalg.det(matrix))
    if volume < MIN_VOLUME:
        return f"degenerate: volume {volume:.3g} A^3"
    return ""


def _match(predicted: Structure, target: Structure) -> PairResult:
    rms = StructureMatcher(**MATCHER_KWARGS).get_rms_dist(predicted, target)
    if rms is None:
        return PairResult(False, None, "no match")
    return PairResult(True, float(rms[0]), "")


def match_pair(predicted: Structure | None, target: Structure, timeout: float | None = 60.0) -> PairResult:
    """Match one pair; gives up after ``timeout`` seconds (None: wait forever).

    The matcher runs in a daemon thread so a stalled pair is abandoned, not waited for; this
    works inside dask worker threads, where signal-based timeouts cannot.
    """
    reason = _degenerate(predicted)
    if reason:
        return PairResult(False, None, reason)
    box: list[PairResult] = []

    def run() -> None:
        try:
            box.append(_match(predicted, target))
        except Exception as exc:  # noqa: BLE001 - any matcher failure is a recorded miss
            box.append(PairResult(False, None, f"error: {type(exc).__name__}: {exc}"))

    if timeout is not None and timeout <= 0:
        return PairResult(False, None, "timeout")
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    return box[0] if box else PairResult(False, None, "timeout")


def _match_chunk(pairs: list[tuple[Structure | None, Structure]], timeout: float | None) -> list[PairResult]:
    return [match_pair(p, t, timeout) for p, t in pairs]


def match_rate(
    predicted: Sequence[Structure | None],
    targets: Sequence[Structure],
    client=None,
    scheduler_address: str | None = None,
    timeout: float | None = 60.0,
    n_workers: int = 2,
    serial: bool | None = None,
    chunk_size: int = 8,
) -> MatchResult:
    """Fraction of ``predicted[i]`` that match ``targets[i]``, with per-pair results.

    Parallel over ``client`` (a ``distributed.Client``), else over a new client connected to
    ``scheduler_address``, else over a temporary ``LocalCluster`` with ``n_workers`` processes.
    ``serial=None`` runs in-process when there are fewer than ``SERIAL_BELOW`` pairs and no
    client/address was given.
    """
    if len(predicted) != len(targets):
        raise ValueError(f"{len(predicted)} predictions but {len(targets)} targets")
    pairs = list(zip(predicted, targets))
    if not pairs:
        return MatchResult(rate=math.nan, pairs=[])
    if serial is None:
        serial = client is None and scheduler_address is None and len(pairs) < SERIAL_BELOW
    if serial:
        results = _match_chunk(pairs, timeout)
    else:
        results = _match_on_dask(pairs, client, scheduler_address, timeout, n_workers, chunk_size)
    return MatchResult(rate=sum(r.matched for r in results) / len(results), pairs=results)


def _match_on_dask(pairs, client, scheduler_address, timeout, n_workers, chunk_size) -> list[PairResult]:
    from distributed import Client, LocalCluster

    owned: list = []
    if client is None:
        if scheduler_address is not None:
            client = Client(scheduler_address)
            owned = [client]
        else:
            cluster = LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
            client = Client(cluster)
            owned = [client, cluster]
    try:
        chunks = [pairs[i : i + chunk_size] for i in range(0, len(pairs), chunk_size)]
        futures = client.map(_match_chunk, chunks, timeout=timeout, pure=False)
        # Each pair enforces its own timeout on the worker; chunks come back in order.
        return [r for chunk in client.gather(futures) for r in chunk]
    finally:
        for resource in owned:
            resource.close()
