"""The ``candidates`` collection: one document per generated structure, its whole life in one place.

Every layer reads and writes candidates through these functions only (the flows stages, the report,
and hpc's ``crystalgen candidates`` / resubmission commands), so the document layout lives here.

Document fields: ``candidate_id`` (unique), ``campaign``, ``condition`` {formula, spacegroup,
formation_energy, scheme}, ``sample_index``, ``seed``, ``model`` {checkpoint, method, steps},
``stage`` (one of :data:`STAGES`), ``formula`` (reduced), ``chemsys``, ``structure`` (latest, pymatgen
dict), ``prerelax`` {energy_per_atom, e_above_hull, potential, converged, steps}, ``relax`` {engine,
is_dft, energy_per_atom, energy_source, job_uuid, incar}, ``e_above_hull`` (from the hull stage),
``hull`` {decomposition, below_hull, reference_source}, ``error``, ``history`` [{stage, at, ...}],
``updated_at``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.collection import Collection

from crystalgen.settings import Settings, get_settings

COLLECTION = "candidates"
STAGES = ("generated", "prerelaxed", "selected", "relaxed", "hull", "failed", "rejected")
#: stages a candidate never leaves by itself (a resubmission moves it back explicitly)
TERMINAL = ("hull", "failed", "rejected")
INDEXES = (
    [("campaign", ASCENDING), ("stage", ASCENDING)],
    [("campaign", ASCENDING), ("e_above_hull", ASCENDING)],
    [("campaign", ASCENDING), ("formula", ASCENDING)],
    [("campaign", ASCENDING), ("condition.spacegroup", ASCENDING)],
)


def candidate_id(campaign: str, condition: dict[str, Any], sample_index: int, seed: int) -> str:
    """Deterministic id: the same campaign, condition, sample index and seed always give the same id."""
    key = {
        "campaign": campaign,
        "formula": condition["formula"],
        "spacegroup": int(condition["spacegroup"]),
        "formation_energy": round(float(condition["formation_energy"]), 6),
        "scheme": condition.get("scheme"),
        "sample_index": int(sample_index),
        "seed": int(seed),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def collection(settings: Settings | None = None) -> Collection:
    """The candidates collection of the configured database, indexes ensured."""
    from crystalgen.db import mongo_client

    settings = settings or get_settings()
    coll = mongo_client(settings)[settings.database][COLLECTION]
    coll.create_index("candidate_id", unique=True)
    for keys in INDEXES:
        coll.create_index(keys)
    return coll


def _now() -> datetime:
    return datetime.now(UTC)


def insert_generated(coll: Collection, docs: Iterable[dict[str, Any]]) -> int:
    """Insert new candidates (stage ``generated``); ids already present are left untouched.

    Returns how many were new. Each ``doc`` needs at least candidate_id, campaign, condition,
    sample_index, seed, model and structure (``None`` plus ``error`` for a failed sample).
    """
    now = _now()
    ops = []
    for doc in docs:
        stage = doc.pop("stage", "generated")
        event = {"stage": stage, "at": now, **({"error": doc["error"]} if doc.get("error") else {})}
        ops.append(
            UpdateOne(
                {"candidate_id": doc["candidate_id"]},
                {"$setOnInsert": {**doc, "stage": stage, "history": [event], "updated_at": now}},
                upsert=True,
            )
        )
    if not ops:
        return 0
    return coll.bulk_write(ops, ordered=False).upserted_count


def set_stage(
    coll: Collection, candidate_id: str, stage: str, fields: dict[str, Any] | None = None, **event: Any
) -> None:
    """Move a candidate to ``stage``, set ``fields`` (dotted keys allowed) and log the event in history."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    now = _now()
    result = coll.update_one(
        {"candidate_id": candidate_id},
        {
            "$set": {**(fields or {}), "stage": stage, "updated_at": now},
            "$push": {"history": {"stage": stage, "at": now, **event}},
        },
    )
    if result.matched_count != 1:
        raise KeyError(f"no candidate {candidate_id}")


def get(coll: Collection, candidate_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Documents by id (missing ids are absent from the result)."""
    return {doc["candidate_id"]: doc for doc in coll.find({"candidate_id": {"$in": list(candidate_ids)}})}


def at_stage(coll: Collection, candidate_ids: Iterable[str], *stages: str) -> list[dict[str, Any]]:
    """The documents among ``candidate_ids`` that are in one of ``stages`` (what a job still has to do)."""
    return list(coll.find({"candidate_id": {"$in": list(candidate_ids)}, "stage": {"$in": list(stages)}}))


def existing_ids(coll: Collection, candidate_ids: Iterable[str]) -> set[str]:
    return {doc["candidate_id"] for doc in coll.find({"candidate_id": {"$in": list(candidate_ids)}}, {"candidate_id": 1})}


def duplicate_filter(duplicates: bool) -> dict[str, Any]:
    """Filter on ``hull.duplicate_of``: only candidates that relaxed into a better one's crystal
    (``True``), or only the others (``False``; unranked candidates have no such field and match)."""
    return {"hull.duplicate_of": {"$ne": None} if duplicates else None}


def query(
    coll: Collection,
    campaign: str,
    stages: Iterable[str] | None = None,
    below_hull: bool | None = None,
    max_e_above_hull: float | None = None,
    formula: str | None = None,
    spacegroup: int | None = None,
    sort_by_e_above_hull: bool = False,
    limit: int = 0,
    projection: dict[str, int] | None = None,
    duplicates: bool | None = None,
) -> list[dict[str, Any]]:
    """Candidates of ``campaign`` filtered by stage, hull result, formula or condition space group.

    ``duplicates=False`` leaves out ranked candidates whose relaxed structure repeats a better one
    (``hull.duplicate_of``), ``True`` keeps only those, ``None`` does not look.
    """
    filt: dict[str, Any] = {"campaign": campaign}
    if stages is not None:
        filt["stage"] = {"$in": list(stages)}
    if below_hull is not None:
        filt["hull.below_hull"] = below_hull
    if max_e_above_hull is not None:
        filt["e_above_hull"] = {"$lte": max_e_above_hull}
    if formula is not None:
        from pymatgen.core import Composition

        filt["formula"] = Composition(formula).reduced_formula
    if spacegroup is not None:
        filt["condition.spacegroup"] = spacegroup
    if duplicates is not None:
        filt.update(duplicate_filter(duplicates))
    cursor = coll.find(filt, projection)
    if sort_by_e_above_hull:
        cursor = cursor.sort([("e_above_hull", ASCENDING), ("candidate_id", ASCENDING)])
    if limit:
        cursor = cursor.limit(limit)
    return list(cursor)


def count_by_stage(coll: Collection, campaign: str) -> dict[str, int]:
    """Number of candidates of ``campaign`` in every stage (zeros included)."""
    counts = dict.fromkeys(STAGES, 0)
    for row in coll.aggregate([{"$match": {"campaign": campaign}}, {"$group": {"_id": "$stage", "n": {"$sum": 1}}}]):
        counts[row["_id"]] = row["n"]
    return counts
