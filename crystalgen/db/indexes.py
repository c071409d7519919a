"""Indexes on the fields FireWorks workers and the jobflow job store query, created on every connection.

FireWorks creates its indexes only in ``lpad reset`` / ``lpad tuneup``, which crystalgen never runs
(``ensure_counters`` replaces the reset), and jobflow creates none. Without them every lookup by
``fw_id``, ``launch_id``, workflow node or job ``uuid`` scans its collection, so a worker's time per
firework grows with the database (on the embedded server: 0.5 s per ``fw_id`` lookup among 5,000
fireworks, 5 ms with the index). The fields are the ones in FireWorks' ``LaunchPad.tuneup`` plus the
one compound index that serves a worker's checkout query (READY fireworks of its category, highest
``_priority`` first, oldest first).

``tuneup`` itself cannot be used on SecantusDB: it passes ``background=...``, and SecantusDB refuses an
index that already exists with other options. Here no options are passed, and an existing index of
the same keys counts as done.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import OperationFailure

# pymongo index specs: a field name, or a list of (field, direction)
UNIQUE = "unique"
FIREWORKS = {
    "fireworks": [("fw_id", UNIQUE), "state", "spec._category", "created_on", "updated_on", "name", "launches",
                  [("state", ASCENDING), ("spec._category", ASCENDING), ("spec._priority", DESCENDING),
                   ("created_on", ASCENDING)]],
    "launches": [("launch_id", UNIQUE), "fw_id", "state_history.reservation_id", "state", "time_start", "time_end",
                 "host", "ip", "fworker.name"],
    "workflows": ["nodes", "state", "name", "created_on", "updated_on"],
}
#: jobflow's JobStore finds outputs by job uuid, latest index first (``JobStore.get_output``)
JOB_STORE = [[("uuid", ASCENDING), ("index", DESCENDING)]]
#: server answers meaning "an index on these keys already exists with other options or another name"
_ALREADY_THERE = {85, 86}  # IndexOptionsConflict, IndexKeySpecsConflict
_UNAUTHORIZED = 13  # a read-only user: queries still work, only slower
_DUPLICATE_KEY = 11000


def _create(collection, spec) -> None:
    keys, unique = (spec[0], True) if isinstance(spec, tuple) else (spec, False)
    try:
        collection.create_index(keys, **({"unique": True} if unique else {}))
    except OperationFailure as exc:
        if exc.code == _DUPLICATE_KEY:  # ids duplicated by an older, racy allocation: index them anyway
            _create(collection, keys)
        elif exc.code not in _ALREADY_THERE | {_UNAUTHORIZED}:
            raise


def ensure_fireworks_indexes(lpad, fireworks=(), workflows=()) -> None:
    """FireWorks' indexes on ``lpad``'s collections, plus ``fireworks`` / ``workflows`` specs of the
    caller's own queries (e.g. the fields a campaign status groups by)."""
    for name, specs in FIREWORKS.items():
        extra = {"fireworks": fireworks, "workflows": workflows}.get(name, ())
        for spec in [*specs, *extra]:
            _create(getattr(lpad, name), spec)


def ensure_job_store_indexes(collection) -> None:
    """The job store's output lookups, on the pymongo collection of its documents."""
    for spec in JOB_STORE:
        _create(collection, spec)
