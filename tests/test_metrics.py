"""Match rate: identical structures match, distorted ones do not, timeouts and degenerate
predictions are recorded misses; the dask path agrees with the serial one."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.metrics import match_pair, match_rate


def _structures():
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    tab2 = Structure(Lattice.hexagonal(3.1, 3.3), ["Ta", "B", "B"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]])
    perov = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                      [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return [nacl, tab2, perov]


def _distorted(structure: Structure) -> Structure:
    rng = np.random.default_rng(0)
    frac = structure.frac_coords + rng.uniform(-0.25, 0.25, size=structure.frac_coords.shape)
    return Structure(structure.lattice.matrix * np.diag([1.0, 1.6, 0.7]), structure.species, frac)


def test_identical_structures_rate_one():
    targets = _structures()
    result = match_rate([s.copy() for s in targets], targets)
    assert result.rate == 1.0 and all(p.matched and p.rms == pytest.approx(0, abs=1e-6) for p in result.pairs)


def test_perturbed_beyond_tolerance_rate_zero():
    targets = _structures()
    result = match_rate([_distorted(s) for s in targets], targets)
    assert result.rate == 0.0
    assert [p.reason for p in result.pairs] == ["no match"] * 3


def test_small_perturbation_still_matches():
    target = _structures()[1]
    moved = target.copy()
    moved.perturb(0.05, min_distance=0.01, seed=0)
    assert match_pair(moved, target).matched


def test_timeout_is_a_recorded_miss():
    target = _structures()[0]
    assert match_pair(target, target, timeout=0).reason == "timeout"
    # A real (not pre-empted) timeout: a 1 µs budget is far below what matching needs.
    result = match_rate([target * (2, 2, 2)], [target * (2, 2, 2)], timeout=1e-6)
    assert result.rate == 0.0 and result.pairs[0].reason == "timeout"


def test_degenerate_predictions_are_misses_with_reasons():
    target = _structures()[0]
    flat = Structure(Lattice([[1, 0, 0], [0, 1, 0], [0, 0, 1e-9]]), ["Na"], [[0, 0, 0]])
    result = match_rate([None, flat, target], [target, target, target])
    assert result.rate == pytest.approx(1 / 3)
    assert result.pairs[0].reason == "no structure"
    assert result.pairs[1].reason.startswith("degenerate")
    assert result.reasons() == {"no structure": 1, result.pairs[1].reason: 1}


def test_dask_local_cluster_matches_serial():
    targets = _structures() * 3
    predicted = [s.copy() if i % 2 == 0 else _distorted(s) for i, s in enumerate(targets)]
    predicted[4] = None
    serial = match_rate(predicted, targets, serial=True)
    parallel = match_rate(predicted, targets, serial=False, n_workers=2, chunk_size=2)
    assert [p.matched for p in parallel.pairs] == [p.matched for p in serial.pairs]
    assert [p.reason for p in parallel.pairs] == [p.reason for p in serial.pairs]
    assert parallel.rate == serial.rate == pytest.approx(4 / 9)


def test_existing_client_and_scheduler_address():
    from distributed import Client, LocalCluster

    targets = _structures()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            assert match_rate(targets, targets, client=client).rate == 1.0
        assert match_rate(targets, targets, scheduler_address=cluster.scheduler_address).rate == 1.0
