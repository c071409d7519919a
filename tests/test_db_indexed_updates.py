"""Find-and-modify from indexes (SecantusDB workaround): same answers as the server's own, no double claims."""

from __future__ import annotations

import multiprocessing as mp

from pymongo import MongoClient, ReturnDocument

from crystalgen.db import launchpad, mongo_client
from crystalgen.db.indexed_updates import IndexedFindAndModify, is_secantus


def _pair(settings, name):
    """The same documents in two collections: one used directly, one through the wrapper."""
    db = mongo_client(settings)[settings.database]
    docs = [{"n": i, "state": "READY" if i % 2 else "DONE", "p": i % 3} for i in range(12)]
    plain, wrapped = db[f"{name}_plain"], db[f"{name}_wrapped"]
    for coll in (plain, wrapped):
        coll.insert_many([dict(d) for d in docs])
        coll.create_index("n", unique=True)
    return plain, IndexedFindAndModify(wrapped)


def _strip(doc):
    return None if doc is None else {k: v for k, v in doc.items() if k != "_id"}


def test_answers_and_writes_like_the_servers_own_find_and_modify(settings):
    plain, wrapped = _pair(settings, "fam")
    calls = [
        ("find_one_and_update", ({"state": "READY"}, {"$set": {"state": "RESERVED"}}), {"sort": [("p", -1), ("n", 1)]}),
        ("find_one_and_update", ({"n": 4}, {"$inc": {"p": 10}}), {"return_document": ReturnDocument.AFTER}),
        ("find_one_and_update", ({"n": 99}, {"$set": {"state": "X"}}), {}),
        ("find_one_and_update", ({"n": 50}, {"$set": {"state": "NEW"}}), {"upsert": True}),
        ("find_one_and_replace", ({"n": 3}, {"n": 3, "state": "REPLACED"}), {}),
        ("find_one_and_replace", ({"n": 60}, {"n": 60, "state": "INSERTED"}),
         {"upsert": True, "return_document": ReturnDocument.AFTER}),
        ("find_one_and_update", ({"state": "NOPE"}, {"$set": {"p": 0}}), {}),
    ]
    for method, args, kwargs in calls:
        expected = getattr(plain, method)(*args, **kwargs)
        assert _strip(getattr(wrapped, method)(*args, **kwargs)) == _strip(expected), (method, args)
    assert [_strip(d) for d in plain.find({}, sort=[("n", 1)])] == [_strip(d) for d in wrapped.find({}, sort=[("n", 1)])]


def _claim(uri, database, name, out):
    coll = IndexedFindAndModify(MongoClient(uri)[database][name])
    claimed = []
    while (doc := coll.find_one_and_update({"state": "READY"}, {"$set": {"state": "RESERVED"}, "$inc": {"claims": 1}},
                                           sort=[("p", -1)])) is not None:
        claimed.append(doc["n"])
    out.put(claimed)


def test_concurrent_claims_take_every_document_exactly_once(settings):
    db = mongo_client(settings)[settings.database]
    db.queue.insert_many([{"n": i, "state": "READY", "p": i % 4, "claims": 0} for i in range(200)])
    db.queue.create_index([("state", 1), ("p", -1)])
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_claim, args=(settings.mongodb_uri, settings.database, "queue", out)) for _ in range(4)]
    for worker in workers:
        worker.start()
    claimed = [n for _ in workers for n in out.get(timeout=300)]
    for worker in workers:
        worker.join(60)
    assert sorted(claimed) == list(range(200))
    assert db.queue.count_documents({"claims": 1}) == 200


def test_launchpads_on_secantus_get_the_wrapper(settings):
    lpad = launchpad()
    assert is_secantus(lpad.db)  # the session's server is SecantusDB
    assert all(isinstance(getattr(lpad, name), IndexedFindAndModify) for name in ("fireworks", "launches", "workflows"))
