"""The generate stage's stored output does not grow with the grid (a 10^6-condition grid once died on a
151 MB document): it returns counts, and candidates go to their own documents in batches."""

from __future__ import annotations

from pathlib import Path

import bson
import pytest
from pymatgen.core import Lattice, Structure

from flows import candidates as cands
from flows.campaign import parse_campaign

TEST_DATA = Path(__file__).parent / "test_data" / "vasp"
TAW = Structure(Lattice.cubic(3.22), ["Ta", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()


def generate(name: str, count: int) -> tuple[dict, int]:
    """Run only the generate job of a campaign of ``count`` conditions with a cheap stand-in generator
    (given structures); returns its output and the size of its stored job-store document."""
    from jobflow import Flow, run_locally

    from crystalgen.db import job_store
    from flows.makers.campaign import stage_makers

    campaign = parse_campaign({
        "name": name, "compositions": ["TaW"], "spacegroups": [221], "rescue": False,
        "energy_grid": {"start": -1.0, "step": 1e-6, "count": count},
        "relax": {"engine": "mlip"}, "references": {"file": str(TEST_DATA / "references.json")},
    })
    job = stage_makers(campaign, structures={"TaW": [TAW]}).generate.make({})
    store = job_store()
    responses = run_locally(Flow([job]), store=store, log=False, ensure_success=True)
    output = responses[job.uuid][1].output
    store.connect()
    stored = store.docs_store.query_one({"uuid": job.uuid})
    return output, len(bson.encode({k: v for k, v in stored.items() if k != "_id"}))


def test_generate_output_is_the_same_size_for_any_grid(settings):
    small, small_bytes = generate("grid-small", 10)
    large, large_bytes = generate("grid-large", 3_000)
    assert small["candidates"] == small["new"] == 10 and large["candidates"] == large["new"] == 3_000
    assert abs(large_bytes - small_bytes) < 64, (small_bytes, large_bytes)
    assert cands.collection().count_documents({"campaign": "grid-large"}) == 3_000


@pytest.mark.slow
def test_a_million_condition_grid_generates_without_a_large_document(settings):
    output, size = generate("grid-million", 1_000_000)
    assert output["new"] == 1_000_000 and size < 4096
    assert cands.collection().count_documents({"campaign": "grid-million"}) == 1_000_000
