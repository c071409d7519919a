"""Database lifecycle, the connection factory and race-free FireWorks ids on the real server."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crystalgen.db import DatabaseUnavailable, job_store, launchpad, mongo_client
from crystalgen.settings import get_settings

CLI = [sys.executable, "-m", "crystalgen"]


def _run_cli(args, env_overrides, timeout=120):
    env = {**os.environ, **env_overrides}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_db_start_status_stop_lifecycle(tmp_path):
    env = {"CRYSTALGEN_DATA_DIR": str(tmp_path / "data"), "CRYSTALGEN_MONGODB_URI": "",
           "CRYSTALGEN_CONFIG": str(tmp_path / "none.yaml")}
    started = _run_cli(["db", "start"], env)
    assert started.returncode == 0, started.stderr
    assert "started" in started.stdout
    try:
        again = _run_cli(["db", "start"], env)
        assert "already running" in again.stdout
        status = _run_cli(["db", "status"], env)
        assert status.returncode == 0 and "answers ping" in status.stdout
        uri = _run_cli(["db", "uri"], env).stdout.strip()
        assert uri.startswith("mongodb://crystalgen:") and "@127.0.0.1:" in uri
    finally:
        stopped = _run_cli(["db", "stop"], env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    after = _run_cli(["db", "status"], env)
    assert "not running" in after.stdout and after.returncode != 0


def test_embedded_data_survive_restart(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CRYSTALGEN_MONGODB_URI", "")
    monkeypatch.setenv("CRYSTALGEN_CONFIG", str(tmp_path / "none.yaml"))
    get_settings.cache_clear()
    from crystalgen.db import server

    try:
        client = mongo_client()  # starts the embedded server on demand
        client.cg.things.insert_one({"name": "TaB2"})
        client.close()
        server.stop(get_settings().data_dir)
        client = mongo_client()
        assert client.cg.things.find_one({"name": "TaB2"}) is not None
        client.close()
    finally:
        server.stop(get_settings().data_dir)
        get_settings.cache_clear()


def test_session_server_requires_login(db_server):
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure

    with pytest.raises(OperationFailure, match="requires authentication"):
        MongoClient("127.0.0.1", db_server.port, serverSelectionTimeoutMS=3000).cg.things.find_one()


def test_bad_uri_gives_clear_error_and_nonzero_exit(tmp_path):
    bad = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500"
    env = {"CRYSTALGEN_MONGODB_URI": bad, "CRYSTALGEN_CONFIG": str(tmp_path / "none.yaml")}
    result = _run_cli(["db", "status"], env)
    assert result.returncode == 1
    assert "cannot reach MongoDB at mongodb://127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_malformed_uri_is_named(settings, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_MONGODB_URI", "not-a-uri")
    get_settings.cache_clear()
    with pytest.raises(DatabaseUnavailable, match="not-a-uri"):
        mongo_client()


def test_job_store_round_trip_with_gridfs(settings):
    from jobflow import Response, job, run_locally

    @job(data="blob")
    def make_blob(n):
        return {"blob": list(range(n)), "n": n}

    store = job_store()
    out = make_blob(5000)
    responses = run_locally(out, store=store, ensure_success=True)
    assert responses[out.uuid][1].output["n"] == 5000
    store.connect()
    assert store.get_output(out.uuid, load=True)["blob"][-1] == 4999
    assert store.additional_stores["data"].count() == 1


def test_opening_a_used_database_never_resets_its_id_counters(settings):
    """A process that found no counters and creates them late must not reissue handed-out ids."""
    from crystalgen.db.fireworks_ids import ensure_counters

    lpad = launchpad()
    first = [lpad.get_new_fw_id() for _ in range(3)]
    first_launch = lpad.get_new_launch_id()
    ensure_counters(lpad)  # what a slower process opening the fresh database does
    ensure_counters(launchpad())
    assert first == [1, 2, 3]
    assert lpad.get_new_fw_id() == 4
    assert lpad.get_new_launch_id() == first_launch + 1
    assert lpad.fw_id_assigner.count_documents({}) == 1


def _add_workflows(n_wfs, worker):
    from fireworks import Firework, ScriptTask, Workflow

    lpad = launchpad()
    for i in range(n_wfs):
        fws = [Firework(ScriptTask.from_str("true"), name=f"w{worker}-{i}-{k}") for k in range(2)]
        lpad.add_wf(Workflow(fws, {fws[0]: [fws[1]]}, name=f"wf-{worker}-{i}"))


def _launch(workdir):
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire

    os.chdir(workdir)
    rapidfire(launchpad(), FWorker(name=f"worker-{os.getpid()}"), nlaunches=0, sleep_time=0, strm_lvl="ERROR")


def test_concurrent_submitters_and_launchers_get_unique_ids(settings, tmp_path):
    ctx = mp.get_context("spawn")
    submitters = [ctx.Process(target=_add_workflows, args=(25, w)) for w in range(4)]
    for proc in submitters:
        proc.start()
    for proc in submitters:
        proc.join(300)
        assert proc.exitcode == 0
    lpad = launchpad()
    fw_ids = [d["fw_id"] for d in lpad.fireworks.find({}, {"fw_id": 1})]
    assert len(fw_ids) == 200 and len(set(fw_ids)) == 200

    launchers = []
    for w in range(4):
        workdir = tmp_path / f"launcher{w}"
        workdir.mkdir()
        launchers.append(ctx.Process(target=_launch, args=(str(workdir),)))
    for proc in launchers:
        proc.start()
    for proc in launchers:
        proc.join(600)
        assert proc.exitcode == 0

    states = {d["state"] for d in lpad.fireworks.find({}, {"state": 1})}
    assert states == {"COMPLETED"}
    launch_ids = [d["launch_id"] for d in lpad.launches.find({}, {"launch_id": 1})]
    assert len(launch_ids) == 200 and len(set(launch_ids)) == 200
    for fw in lpad.fireworks.find({}, {"fw_id": 1, "launches": 1}):
        assert len(fw["launches"]) == 1, f"firework {fw['fw_id']} ran {len(fw['launches'])} times"
