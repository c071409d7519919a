"""The lookups FireWorks workers and the job store make are served by indexes, on the real server."""

from __future__ import annotations

from crystalgen.db import job_store, launchpad


def _stages(collection, query, sort=None) -> list[str]:
    cursor = collection.find(query)
    if sort:
        cursor = cursor.sort(sort)
    plan, stages = cursor.explain()["queryPlanner"]["winningPlan"], []
    while plan:
        stages.append(plan["stage"])
        plan = plan.get("inputStage")
    return stages


def test_worker_lookups_use_indexes(settings):
    from fireworks import Firework, PyTask, Workflow

    lpad = launchpad()
    job_store()
    lpad.add_wf(Workflow([Firework(PyTask(func="time.sleep", args=[0]), spec={"_category": "cpu"}) for _ in range(3)]))
    outputs = lpad.db["outputs"]
    outputs.insert_many([{"uuid": f"u{i}", "index": 1} for i in range(3)])

    lookups = [
        (lpad.fireworks, {"fw_id": 2}, None),
        (lpad.fireworks, {"launches": 7}, None),
        (lpad.launches, {"launch_id": 1}, None),
        (lpad.workflows, {"nodes": 2}, None),
        (lpad.fireworks, {"state": "READY", "spec._category": "cpu"}, [("spec._priority", -1), ("created_on", 1)]),
        (outputs, {"uuid": "u1"}, [("index", -1)]),
    ]
    for collection, query, sort in lookups:
        stages = _stages(collection, query, sort)
        assert "IXSCAN" in stages and "COLLSCAN" not in stages, (collection.name, query, stages)


def test_indexes_made_by_fireworks_tuneup_do_not_stop_a_connection(settings):
    """``lpad tuneup`` creates the same keys with ``background=True``; SecantusDB refuses to create an
    index again with other options, which must not make ``launchpad()`` fail."""
    lpad = launchpad()
    for collection in (lpad.fireworks, lpad.launches, lpad.workflows):
        collection.drop_indexes()
    lpad.fireworks.create_index("fw_id", unique=True, background=True)
    lpad.fireworks.create_index("state", background=True)

    again = launchpad()
    names = {index["name"] for index in again.fireworks.list_indexes()}
    assert {"fw_id_1", "state_1", "state_1_spec._category_1_spec._priority_-1_created_on_1"} <= names


def test_worker_query_takes_the_same_fireworks_without_a_top_level_or(settings):
    from fireworks import FWorker

    lpad = launchpad()  # installs the index-friendly FWorker.query
    pinned = [{}, {"_fworker": None}, {"_fworker": "w1"}, {"_fworker": "w2"}]
    lpad.fireworks.insert_many([{"fw_id": 100 + i, "state": "READY", "created_on": str(i),
                                 "spec": {"_category": "cpu", "_priority": 1, "tag": i % 2, **pinned[i % 4]}}
                                for i in range(16)])
    workers = [FWorker(name="w1", category="cpu"), FWorker(name="w2", category="cpu", query={"$or": [{"spec.tag": 0}]})]
    for worker in workers:
        new, fireworks_own = worker.query, FWorker.query.fget.original(worker)
        assert new != fireworks_own  # the $or clause was rewritten
        ids = {doc["fw_id"] for doc in lpad.fireworks.find(new)}
        assert ids == {doc["fw_id"] for doc in lpad.fireworks.find(fireworks_own)} and ids
    # no top-level $or left, which SecantusDB answers with a collection scan (benchmarks/dispatch.py)
    assert "$or" not in workers[0].query and workers[0].query["spec._fworker"] == {"$in": [None, "w1"]}
