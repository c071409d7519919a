"""FireWorks' find-and-modify calls as an indexed read plus a conditional write, on SecantusDB.

SecantusDB 0.7.0b3 answers ``findAndModify`` by scanning the whole collection, whatever the filter
and indexes: 7 ms of server CPU per call among 300 fireworks, 50 ms among 3,000, while ``find_one``
and ``update_one`` / ``replace_one`` on the same filter use the index (0.5 / 2 ms, flat). FireWorks
makes about 11 such calls per firework (checkout, state changes, workflow lock and refresh, launch
records), so on this server every firework costs time in proportion to the database.

``IndexedFindAndModify`` wraps a collection: ``find_one_and_update`` / ``find_one_and_replace`` find
the document with ``find_one`` (same filter and sort), then write it with ``update_one`` /
``replace_one`` on its ``_id`` *and the original filter*, so the write only lands if the document
still matches (SecantusDB applies such a conditional update atomically: four processes claiming
300 documents this way claimed each exactly once). If another writer got there first, it looks
again; an upsert that finds nothing inserts with ``update_one`` / ``replace_one(upsert=True)``
(FireWorks upserts by ``fw_id`` / ``launch_id``, which have unique indexes). Calls with options this
does not reproduce (a projection, a session, a filter on ``_id``) go to the server unchanged. It is
installed only when the server says it is SecantusDB (``buildInfo.secantusVersion``); mongod answers
findAndModify from its indexes.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument

FIND_AND_MODIFY_COLLECTIONS = ("fireworks", "launches", "workflows")
MAX_RACES = 1000  # a document that changes under us this often means something else is wrong


class IndexedFindAndModify:
    """Wraps a pymongo collection; everything but the two find-and-modify calls passes through."""

    def __init__(self, collection) -> None:
        self._collection = collection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def find_one_and_update(self, filter, update, **options):
        return self._find_and_write("update", filter, update, **options)

    def find_one_and_replace(self, filter, replacement, **options):
        return self._find_and_write("replace", filter, replacement, **options)

    def _find_and_write(self, kind, filter, change, projection=None, sort=None, upsert=False,
                        return_document=ReturnDocument.BEFORE, **kwargs):
        """``update_one`` / ``replace_one`` (``kind``) the first document ``find_one`` gives, if it still matches."""
        if projection is not None or kwargs or "_id" in filter:
            return getattr(self._collection, f"find_one_and_{kind}")(
                filter, change, projection=projection, sort=sort, upsert=upsert, return_document=return_document,
                **kwargs)
        write = self._collection.update_one if kind == "update" else self._collection.replace_one
        for _ in range(MAX_RACES):
            before = self._collection.find_one(filter, sort=sort)
            if before is None:
                if not upsert:
                    return None
                # an insert: FireWorks upserts by fw_id / launch_id, both with unique indexes
                inserted = write(filter, change, upsert=True).upserted_id
                if return_document is ReturnDocument.AFTER:
                    return self._collection.find_one({"_id": inserted} if inserted is not None else filter)
                return None
            if write({"_id": before["_id"], **filter}, change).matched_count:  # flat: SecantusDB scans for $and
                if return_document is ReturnDocument.AFTER:
                    return self._collection.find_one({"_id": before["_id"]})
                return before
        raise RuntimeError(f"{self._collection.name}: lost {MAX_RACES} races in a row for {filter}")


def is_secantus(database) -> bool:
    """Whether ``database``'s server is SecantusDB (it adds ``secantusVersion`` to buildInfo)."""
    from pymongo.errors import PyMongoError

    try:
        return "secantusVersion" in database.command("buildInfo")
    except PyMongoError:
        return False


def wrap(lpad) -> None:
    """Give ``lpad`` indexed find-and-modify on its fireworks, launches and workflows collections, if
    its server is SecantusDB (idempotent)."""
    if not is_secantus(lpad.db):
        return
    for name in FIND_AND_MODIFY_COLLECTIONS:
        collection = getattr(lpad, name)
        if not isinstance(collection, IndexedFindAndModify):
            setattr(lpad, name, IndexedFindAndModify(collection))


def install() -> None:
    """Wrap every FireWorks LaunchPad built in this process, as ``wrap`` does (idempotent)."""
    from crystalgen.db.fireworks_ids import after_launchpad_init

    after_launchpad_init("indexed find-and-modify", wrap)
