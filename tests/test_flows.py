"""The campaign flow end to end on the test database (MLIP engine), and resuming after a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from flows import candidates as cands
from flows.campaign import parse_campaign
from flows.candidates import CandidateQuery
from flows.schemas import CandidateState
from flow_helpers import candidate_doc


def docs_of(campaign: str, *states: CandidateState) -> list[dict]:
    """Stored candidates of ``campaign`` (any state, or the given ones), best first."""
    return CandidateQuery(campaign, stages=states or None, duplicates=None).find(cands.collection())

TEST_DATA = Path(__file__).parent / "test_data" / "vasp"
TAW_STRUCTURES = [
    Structure(Lattice.cubic(3.22), ["Ta", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    Structure(Lattice.tetragonal(3.1, 3.45), ["Ta", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    Structure(Lattice.hexagonal(2.9, 4.8), ["Ta", "W"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5]]),
]


def taw_campaign(**overrides):
    """Ta-W campaign with the small test reference file (bcc Ta, bcc W): fast to relax."""
    data = {
        "name": "taw-test",
        "compositions": ["TaW"],
        "spacegroups": [221],
        "energy_grid": {"start": "hull", "step": 0.01, "count": 1},
        "samples_per_condition": 3,
        "prerelax": {"e_above_hull_window": 5.0, "chunk_size": 1, "dedupe": False, "steps": 200},
        "relax": {"engine": "mlip", "steps": 200},
        "references": {"file": str(TEST_DATA / "references.json")},
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return parse_campaign(data)


def run(campaign, structures=TAW_STRUCTURES, **kwargs):
    from jobflow import run_locally

    from crystalgen.db import job_store
    from flows.makers import CampaignMaker

    flow = CampaignMaker(structures={"TaW": [s.as_dict() for s in structures]}).make(campaign)
    return run_locally(flow, store=job_store(), log=False, **kwargs)


@pytest.fixture
def relax_calls(monkeypatch):
    """Record every pre-relax call of crystalgen.relax.relax_structures (the real function still runs)."""
    import crystalgen.relax

    real = crystalgen.relax.relax_structures
    calls: list[list[str]] = []
    state = {"fail_on": None}

    def recording(structures, *args, **kwargs):
        if kwargs.get("description", "").startswith("prerelax"):
            calls.append([s.composition.reduced_formula + f"@{s.volume:.4f}" for s in structures])
            if state["fail_on"] == len(calls):
                raise RuntimeError("simulated crash during pre-relax")
        return real(structures, *args, **kwargs)

    monkeypatch.setattr(crystalgen.relax, "relax_structures", recording)
    return calls, state


def test_mlip_flow_ranks_every_candidate_once_and_rerun_is_a_no_op(settings, relax_calls, tmp_path):
    calls, _ = relax_calls
    campaign = taw_campaign()
    run(campaign, ensure_success=True)
    coll = cands.collection()
    docs = docs_of(campaign.name)
    assert len(docs) == 3
    assert {d["stage"] for d in docs} == {"hull"}
    for doc in docs:
        assert [h["stage"] for h in doc["history"]] == ["generated", "prerelaxed", "selected", "relaxed", "hull"]
        assert doc["relax"]["engine"] == "mlip" and doc["relax"]["is_dft"] is False
        # e_above_hull against bcc Ta + bcc W relaxed with the same potential
        # the references the hull used: relaxed with the stand-in relax's settings, like the candidates
        stored = coll.database["hull_references"].find_one({"key.fmax": campaign.relax.fmax, "key.steps": campaign.relax.steps})
        refs = {e["name"]: e["energy_per_atom"] for e in stored["references"]["entries"]}
        expected = doc["relax"]["energy_per_atom"] - (refs["Ta"] + refs["W"]) / 2
        assert doc["e_above_hull"] == pytest.approx(expected, abs=1e-6)
        assert doc["hull"]["below_hull"] == (expected < 0)
    assert len(calls) == 3  # one chunk per candidate

    run(campaign, ensure_success=True)
    assert len(calls) == 3, "a rerun must not pre-relax finished candidates again"
    assert coll.count_documents({"campaign": campaign.name}) == 3
    assert all(len(d["history"]) == 6 for d in docs_of(campaign.name))  # only the hull re-ranked

    from crystalgen.db import mongo_client
    from flows.report import build_report

    broken = candidate_doc(campaign.name, "TaW", 221, 0.0, stage=CandidateState.FAILED, structure=None,
                           error="generation: atoms 0.16 Å apart (< 0.5 Å)")
    cands.insert_generated(coll, [broken])
    report = build_report(campaign, coll, mongo_client()[settings.database], tmp_path / "report")
    ranked = docs_of(campaign.name, CandidateState.RANKED)
    distinct = [d for d in ranked if d["hull"]["duplicate_of"] is None]
    assert [r["candidate_id"] for r in report["ranked"]] == [d["candidate_id"] for d in distinct]
    # a candidate that relaxed into the crystal of a better one is listed with it, not ranked again
    twins = {d["candidate_id"]: d["hull"]["duplicate_of"] for d in ranked if d["hull"]["duplicate_of"]}
    assert {t: r["candidate_id"] for r in report["ranked"] for t in r["twins"]} == twins
    assert report["counts"]["hull"] == 3 and report["counts"]["failed"] == 1
    assert report["failures"] == [("generation: atoms # Å apart (< # Å)", 1)]
    assert report["plots"] == ["hull_Ta-W.png"] and (tmp_path / "report" / "hull_Ta-W.png").stat().st_size > 5000
    md = (tmp_path / "report" / "report.md").read_text()
    assert "MLIP stand-in, not DFT" in md and ranked[0]["candidate_id"] in md


def test_crash_during_prerelax_resumes_without_recomputing(settings, relax_calls):
    calls, state = relax_calls
    campaign = taw_campaign()
    state["fail_on"] = 2  # the second pre-relax chunk dies
    run(campaign)
    coll = cands.collection()
    counts = cands.count_by_stage(coll, campaign.name)
    # the crashed chunk stays at "generated"; the independent chunks around it finished and were kept
    assert counts["generated"] == 1 and counts["prerelaxed"] == 2 and counts["hull"] == 0
    done_before = {d["candidate_id"] for d in docs_of(campaign.name, CandidateState.PRERELAXED)}
    assert len(calls) == 3
    finished_calls, crashed_call = [calls[0], calls[2]], calls[1]

    state["fail_on"] = None
    run(campaign, ensure_success=True)
    rerun_calls = calls[3:]
    assert rerun_calls == [crashed_call], "only the crashed chunk may be pre-relaxed again"
    assert not any(c in rerun_calls for c in finished_calls)
    assert cands.count_by_stage(coll, campaign.name)["hull"] == 3
    for cid in done_before:
        history = [h.stage for h in cands.get(coll, [cid])[cid].history]
        assert history.count("prerelaxed") == 1


def test_window_and_dedupe_reject_before_relax(settings):
    campaign = taw_campaign(prerelax={"e_above_hull_window": 5.0, "dedupe": True, "chunk_size": 3})
    twins = [TAW_STRUCTURES[0], TAW_STRUCTURES[0].copy(), TAW_STRUCTURES[2]]
    run(campaign, structures=twins, ensure_success=True)
    coll = cands.collection()
    rejected = docs_of(campaign.name, CandidateState.REJECTED)
    assert len(rejected) == 1 and rejected[0]["rejected_reason"].startswith("duplicate of")
    assert rejected[0]["relax"] is None
    assert cands.count_by_stage(coll, campaign.name)["hull"] == 2


