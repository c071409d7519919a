"""The candidate document: schema-checked writes, documents of the previous version, one query builder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from flow_helpers import candidate_doc
from pydantic import ValidationError

from flows import candidates as cands
from flows.candidates import CandidateQuery
from flows.schemas import SCHEMA_VERSION, CandidateState, HullRecord, NewerSchemaError, field_table

README = Path(__file__).parent.parent / "README.md"


def _ranked(coll, docs, ehulls):
    for doc, ehull in zip(docs, ehulls, strict=True):
        hull = HullRecord(decomposition={}, below_hull=ehull < 0, chemsys=doc.chemsys)
        cands.set_stage(coll, doc.candidate_id, CandidateState.RANKED, {"e_above_hull": ehull, "hull": hull})


def test_queries_filter_sort_and_use_an_index(settings):
    coll = cands.collection()
    docs = [candidate_doc("q", f, spg, -0.1) for f, spg in (("TaW", 221), ("TaW", 123), ("TaB2", 191))]
    assert cands.insert_generated(coll, docs) == 3
    assert cands.insert_generated(coll, docs) == 0, "inserting again changes nothing"
    _ranked(coll, docs, [-0.01, 0.2, 0.05])

    def ids(**filters):
        return [d["candidate_id"] for d in CandidateQuery("q", **filters).find(coll)]

    assert ids() == [docs[0].candidate_id, docs[2].candidate_id, docs[1].candidate_id]
    assert ids(below_hull=True) == [docs[0].candidate_id]
    assert len(ids(formula="WTa")) == 2
    assert ids(spacegroup=191, max_e_above_hull=0.1) == [docs[2].candidate_id]
    assert cands.count_by_stage(coll, "q")["hull"] == 3
    assert CandidateQuery("q", formula="TaW").hint() == [("campaign", 1), ("formula", 1)]
    index_keys = [tuple(ix["key"]) for ix in coll.list_indexes()]
    assert ("campaign", "e_above_hull") in index_keys and ("candidate_id",) in index_keys


def test_writes_are_checked_against_the_schema(settings):
    coll = cands.collection()
    (doc,) = [candidate_doc("w", "TaW", 221, -0.1)]
    cands.insert_generated(coll, [doc])
    with pytest.raises(ValueError, match="field 'e_above_hull' does not fit"):
        cands.set_stage(coll, doc.candidate_id, CandidateState.RANKED, {"e_above_hull": "low"})
    with pytest.raises(ValueError, match="(?s)field 'hull' .*below_hull"):
        cands.set_stage(coll, doc.candidate_id, CandidateState.RANKED, {"hull": {"decomposition": {}, "chemsys": "Ta-W"}})
    with pytest.raises(ValueError, match="cannot be set"):
        cands.set_stage(coll, doc.candidate_id, CandidateState.RANKED, {"hull.below_hull": True})
    with pytest.raises(ValueError, match="'done' is not a valid CandidateState"):
        cands.set_stage(coll, doc.candidate_id, "done")
    with pytest.raises(ValidationError, match="spacegroup"):
        candidate_doc("w", "TaW", 231, -0.1)
    stored = cands.get(coll, [doc.candidate_id])[doc.candidate_id]
    assert stored.stage == CandidateState.GENERATED.value and stored.e_above_hull is None, "nothing half-written"
    assert stored.schema_version == SCHEMA_VERSION


def test_documents_of_the_previous_version_still_read(settings):
    """A candidate as crystalgen 0.1 wrote it (no schema_version; failed VASP runs with only relax.job_uuid)."""
    coll = cands.collection()
    at = datetime.now(UTC)
    old = {"candidate_id": "0123456789abcdef01234567", "campaign": "old", "sample_index": 0, "seed": 0,
           "condition": {"formula": "TaW", "spacegroup": 221, "formation_energy": -0.1, "scheme": "from-hull"},
           "model": {"checkpoint": "/x/demo-cfm-n.pt", "method": "cfm-n", "steps": 100}, "formula": "TaW",
           "chemsys": "Ta-W", "structure": None, "stage": "failed", "error": "relax: VASP job failed",
           "relax": {"job_uuid": "abc"}, "history": [{"stage": "generated", "at": at}, {"stage": "failed", "at": at,
                                                                                      "error": "x"}], "updated_at": at}
    coll.insert_one(dict(old))
    doc = cands.get(coll, [old["candidate_id"]])[old["candidate_id"]]
    assert doc.schema_version == 1 and doc.relax.job_uuid == "abc" and doc.history[1].error == "x"
    rows = CandidateQuery("old", stages=(CandidateState.FAILED,)).find(coll)
    assert [cands.summary(r)["composition"] for r in rows] == ["TaW"]

    newer = {**old, "candidate_id": "f" * 24, "schema_version": SCHEMA_VERSION + 1}
    coll.insert_one(newer)
    with pytest.raises(NewerSchemaError, match="newer crystalgen .* upgrade crystalgen"):
        cands.get(coll, [newer["candidate_id"]])


def test_readme_mongosh_example_is_the_query_builders():
    """README shows the ranked-below-hull query; it must be exactly what `crystalgen candidates --below-hull` runs."""
    projection = {"candidate_id": 1, "formula": 1, "condition.spacegroup": 1, "e_above_hull": 1,
                  "relax.energy_per_atom": 1}
    expected = CandidateQuery("tawb-paper", below_hull=True).mongosh(projection)
    assert expected in README.read_text()


def test_readme_lists_every_candidate_field():
    """The README's table of the candidate document is the schema's (regenerate: python -m flows.schemas)."""
    assert "\n".join(field_table()) in README.read_text()
