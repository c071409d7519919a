"""The ``candidates`` collection: every read and write of a candidate document goes through here.

Writes are checked against :class:`flows.schemas.CandidateDoc` (whole documents on insert, each set
field on update); reads that select candidates for people (report, ``crystalgen candidates``, the
README's mongosh example) are built by one query builder, :class:`CandidateQuery`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pymongo import ASCENDING, UpdateOne
from pymongo.collection import Collection

from crystalgen.settings import Settings, get_settings
from flows.schemas import CandidateDoc, CandidateState, HistoryEvent, now

COLLECTION = "candidates"
INDEXES = (
    [("campaign", ASCENDING), ("stage", ASCENDING)],
    [("campaign", ASCENDING), ("stage", ASCENDING), ("grid_index", ASCENDING)],
    [("campaign", ASCENDING), ("stage", ASCENDING), ("prerelax.e_above_hull", ASCENDING)],
    [("campaign", ASCENDING), ("e_above_hull", ASCENDING)],
    [("campaign", ASCENDING), ("formula", ASCENDING)],
    [("campaign", ASCENDING), ("condition.spacegroup", ASCENDING)],
)
#: fields fixed at generation; updates may set only the others
IMMUTABLE = {"schema_version", "candidate_id", "campaign", "condition", "sample_index", "grid_index", "seed",
             "generator", "model", "formula", "chemsys", "stage", "history", "updated_at"}


def candidate_id(campaign: str, condition: dict[str, Any], sample_index: int, seed: int, generator: str = "model") -> str:
    """Deterministic id: the same campaign, condition, sample index, seed and generator always give the same
    id (the model's ids leave the generator out: they are the ids campaigns had before baselines existed)."""
    from crystalgen.sample import condition_key  # torch: only where ids are made

    _formula, spacegroup, energy = condition_key(condition["formula"], condition["spacegroup"],
                                                 condition["formation_energy"])
    if not math.isfinite(energy):  # every NaN condition would get the same id
        raise ValueError(f"condition {condition} has a non-finite formation energy")
    key = {"campaign": campaign, "formula": condition["formula"], "spacegroup": spacegroup, "formation_energy": energy,
           "scheme": condition.get("scheme"), "sample_index": int(sample_index), "seed": int(seed)}
    if generator != "model":
        key["generator"] = generator
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def database(settings: Settings | None = None):
    """The configured database (results, jobflow outputs, FireWorks)."""
    from crystalgen.db import mongo_client

    settings = settings or get_settings()
    return mongo_client(settings)[settings.database]


def collection(settings: Settings | None = None) -> Collection:
    """The candidates collection of the configured database, indexes ensured."""
    coll = database(settings)[COLLECTION]
    coll.create_index("candidate_id", unique=True)
    for keys in INDEXES:
        coll.create_index(keys)
    return coll


def insert_generated(coll: Collection, docs: Iterable[CandidateDoc]) -> int:
    """Insert new candidates; ids already present are left untouched. Returns how many were new."""
    ops = []
    for doc in docs:
        extras = {"error": doc.error} if doc.error else {}
        if doc.rescue:
            extras["rescue"] = doc.rescue
        event = HistoryEvent(stage=doc.stage, at=doc.updated_at, **extras)
        stored = doc.model_copy(update={"history": [event]})
        ops.append(UpdateOne({"candidate_id": doc.candidate_id}, {"$setOnInsert": stored.model_dump()}, upsert=True))
    return coll.bulk_write(ops, ordered=False).upserted_count if ops else 0


@cache
def _field_adapter(name: str) -> TypeAdapter:
    if name not in CandidateDoc.model_fields or name in IMMUTABLE:
        raise ValueError(f"candidate field {name!r} cannot be set (settable: "
                         f"{', '.join(sorted(set(CandidateDoc.model_fields) - IMMUTABLE))})")
    return TypeAdapter(CandidateDoc.model_fields[name].annotation)


def _checked(candidate_id: str, fields: dict[str, Any] | None) -> dict[str, Any]:
    values = {}
    for name, value in (fields or {}).items():
        adapter = _field_adapter(name)
        try:
            values[name] = adapter.dump_python(adapter.validate_python(value))
        except ValidationError as exc:
            raise ValueError(f"candidate {candidate_id}: field {name!r} does not fit the schema: {exc}") from None
    return values


def _move(state: CandidateState, values: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    at = now()
    entry = HistoryEvent(stage=state, at=at, **event).model_dump()
    return {"$set": {**values, "stage": state.value, "updated_at": at}, "$push": {"history": entry}}


def set_stage(coll: Collection, candidate_id: str, stage: CandidateState | str, fields: dict[str, Any] | None = None,
              **event: Any) -> None:
    """Move a candidate to ``stage``, set ``fields`` (each checked against the schema) and log ``event``."""
    state = CandidateState(stage)
    result = coll.update_one({"candidate_id": candidate_id}, _move(state, _checked(candidate_id, fields), event))
    if result.matched_count != 1:
        raise KeyError(f"no candidate {candidate_id}")


def set_stage_many(coll: Collection, filt: dict[str, Any], stage: CandidateState | str,
                   fields: dict[str, Any] | None = None, **event: Any) -> int:
    """``set_stage`` for every candidate matching ``filt``, in one update; returns how many moved."""
    state = CandidateState(stage)
    return coll.update_many(filt, _move(state, _checked(str(filt), fields), event)).modified_count


def ids_at_stage(coll: Collection, campaign: str, stage: CandidateState) -> list[str]:
    """Ids of the campaign's candidates in ``stage``, in grid order (the order work is done in)."""
    cursor = coll.find({"campaign": campaign, "stage": CandidateState(stage).value}, {"candidate_id": 1},
                       sort=[("grid_index", ASCENDING), ("candidate_id", ASCENDING)])
    return [d["candidate_id"] for d in cursor]


def in_campaign(coll: Collection, campaign: str, *stages: CandidateState, where: dict[str, Any] | None = None,
                sort: list | None = None) -> Iterator[CandidateDoc]:
    """The campaign's candidates in ``stages`` (and matching ``where``), streamed, grid order by default."""
    filt = {"campaign": campaign, "stage": {"$in": [CandidateState(s).value for s in stages]}, **(where or {})}
    order = sort or [("grid_index", ASCENDING), ("candidate_id", ASCENDING)]
    return (CandidateDoc.from_mongo(doc) for doc in coll.find(filt, sort=order))


def relax_and_record(candidate_ids: list[str], pending: CandidateState, mlip, step: str, state: CandidateState,
                     records, meter) -> dict[str, int]:
    """Relax the candidates among ``candidate_ids`` still at ``pending`` with ``mlip`` (``MlipSettings``) and
    file each result: ``state`` with the structure and ``records(docs, results)(doc, result)`` (``{field:
    value}``), or ``failed`` with ``"<step>: <error>"``; ``meter`` (``flows.costs``) times the relaxation.
    Returns the counts."""
    coll = collection()
    docs = at_stage(coll, candidate_ids, pending)
    if not docs:
        return {"relaxed": 0, "failed": 0}
    from pymatgen.core import Structure

    with meter.science():
        results = mlip.relax([Structure.from_dict(d.structure) for d in docs], description=f"{step} ({mlip.potential})")
    record = records(docs, results)
    failed = 0
    for doc, result in zip(docs, results, strict=True):
        if result.error is not None:
            failed += 1
            set_stage(coll, doc.candidate_id, CandidateState.FAILED, {"error": f"{step}: {result.error}"}, error=result.error)
        else:
            set_stage(coll, doc.candidate_id, state, {"structure": result.structure.as_dict(), **record(doc, result)})
    return {"relaxed": len(docs) - failed, "failed": failed}


def get(coll: Collection, candidate_ids: Iterable[str]) -> dict[str, CandidateDoc]:
    """Documents by id (missing ids are absent from the result)."""
    return {doc["candidate_id"]: CandidateDoc.from_mongo(doc)
            for doc in coll.find({"candidate_id": {"$in": list(candidate_ids)}})}


def at_stage(coll: Collection, candidate_ids: Iterable[str], *stages: CandidateState) -> list[CandidateDoc]:
    """The documents among ``candidate_ids`` in one of ``stages`` (what a job still has to do), in id order given."""
    order = {cid: i for i, cid in enumerate(candidate_ids)}
    found = coll.find({"candidate_id": {"$in": list(order)}, "stage": {"$in": [CandidateState(s).value for s in stages]}})
    return sorted((CandidateDoc.from_mongo(d) for d in found), key=lambda d: order[d.candidate_id])


def existing_ids(coll: Collection, candidate_ids: Iterable[str]) -> set[str]:
    return {doc["candidate_id"] for doc in coll.find({"candidate_id": {"$in": list(candidate_ids)}}, {"candidate_id": 1})}


def count_by_stage(coll: Collection, campaign: str) -> dict[str, int]:
    """Number of candidates of ``campaign`` in every state (zeros included)."""
    counts = {state.value: 0 for state in CandidateState}
    for row in coll.aggregate([{"$match": {"campaign": campaign}}, {"$group": {"_id": "$stage", "n": {"$sum": 1}}}]):
        counts[row["_id"]] = row["n"]
    return counts


@dataclass(frozen=True)
class CandidateQuery:
    """Which candidates of a campaign to list, lowest ``e_above_hull`` first.

    ``stages=None``: any state. ``duplicates``: ``False`` leaves out ranked candidates whose relaxed
    structure repeats a better one (``hull.duplicate_of``), ``True`` keeps only those, ``None`` does
    not look. ``novel`` / ``generator`` select on the hull stage's novelty and on who made the candidate.
    ``below_hull`` implies ``e_above_hull <= 0`` so the ``(campaign, e_above_hull)`` index
    serves it.
    """

    campaign: str
    stages: tuple[CandidateState, ...] | None = (CandidateState.RANKED,)
    below_hull: bool = False
    max_e_above_hull: float | None = None
    formula: str | None = None
    spacegroup: int | None = None
    duplicates: bool | None = False
    novel: bool | None = None
    generator: str | None = None

    SORT = (("e_above_hull", ASCENDING), ("candidate_id", ASCENDING))

    def filter(self) -> dict[str, Any]:
        filt: dict[str, Any] = {"campaign": self.campaign}
        if self.stages is not None:
            states = [CandidateState(s).value for s in self.stages]
            filt["stage"] = states[0] if len(states) == 1 else {"$in": states}
        max_e = self.max_e_above_hull
        if self.below_hull:
            filt["hull.below_hull"] = True
            max_e = 0.0 if max_e is None else min(max_e, 0.0)
        if max_e is not None:
            filt["e_above_hull"] = {"$lte": max_e}
        if self.formula:
            from pymatgen.core import Composition

            filt["formula"] = Composition(self.formula).reduced_formula
        if self.spacegroup is not None:
            filt["condition.spacegroup"] = int(self.spacegroup)
        if self.duplicates is not None:
            filt["hull.duplicate_of"] = {"$ne": None} if self.duplicates else None
        if self.novel is not None:
            filt["novel"] = self.novel
        if self.generator is not None:
            filt["generator"] = self.generator
        return filt

    def hint(self) -> list[tuple[str, int]]:
        """The ``(campaign, ...)`` index that narrows the filter most (passed as ``hint`` so every server uses it)."""
        filt = self.filter()
        field = next((f for f in ("formula", "condition.spacegroup", "e_above_hull", "stage") if f in filt), "e_above_hull")
        return [("campaign", ASCENDING), (field, ASCENDING)]

    def find(self, coll: Collection, limit: int = 0, projection: dict[str, int] | None = None) -> list[dict[str, Any]]:
        """Matching raw documents (``projection`` may leave fields out), best first."""
        return list(coll.find(self.filter(), projection, hint=self.hint(), sort=list(self.SORT), limit=limit))

    def mongosh(self, projection: dict[str, int] | None = None) -> str:
        """The same query for mongosh, as the README shows it."""
        proj = f", {json.dumps(projection)}" if projection else ""
        sort = json.dumps(dict(self.SORT))
        return (f"db.{COLLECTION}.find({json.dumps(self.filter())}{proj})"
                f".sort({sort}).hint({json.dumps(dict(self.hint()))})")


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The flat row of one stored candidate (any projection of it) that tables, CSV, JSON and reports show."""
    relax, prerelax = doc.get("relax") or {}, doc.get("prerelax") or {}
    condition, hull = doc.get("condition") or {}, doc.get("hull") or {}
    return {
        "candidate_id": doc.get("candidate_id"),
        "formula": doc.get("formula"),
        "composition": condition.get("formula"),
        "spacegroup": condition.get("spacegroup"),
        "target_formation_energy": condition.get("formation_energy"),
        "stage": doc.get("stage"),
        "e_above_hull": doc.get("e_above_hull"),
        "below_hull": hull.get("below_hull"),
        "energy_per_atom": relax.get("energy_per_atom"),
        "engine": relax.get("engine"),
        "generator": doc.get("generator", "model"),
        "novel": doc.get("novel"),
        "matches": doc.get("matches"),
        "is_dft": relax.get("is_dft"),
        "prerelax_e_above_hull": prerelax.get("e_above_hull"),
        "duplicate_of": hull.get("duplicate_of"),
        "decomposition": hull.get("decomposition"),
    }
