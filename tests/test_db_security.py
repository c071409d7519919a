"""The embedded database's access control, private files, process identity and death, on real servers."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from crystalgen.db import DatabaseUnavailable, database_errors, job_store, launchpad, mongo_client, redact, server
from crystalgen.db.identity import identity_of
from crystalgen.settings import get_settings

CLI = [sys.executable, "-m", "crystalgen"]


def _cli(args, env_overrides, timeout=120):
    env = {**os.environ, **env_overrides}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, umask=0o022)


def _embedded_env(tmp_path) -> dict[str, str]:
    return {"CRYSTALGEN_DATA_DIR": str(tmp_path / "data"), "CRYSTALGEN_MONGODB_URI": "",
            "CRYSTALGEN_CONFIG": str(tmp_path / "none.yaml")}


def _listen_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def _servers_on(storage: Path) -> list[int]:
    """Pids of live processes whose command line names ``storage``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            ident = identity_of(int(entry.name))
            if ident and str(storage) in ident.cmdline:
                pids.append(ident.pid)
    return pids


@pytest.mark.parametrize("uri, shown", [
    ("mongodb://user:s3cret@host/", "mongodb://user:***@host/"),
    ("mongodb+srv://u:p%40ss@a.example.org,b.example.org/db?authSource=admin",
     "mongodb+srv://u:***@a.example.org,b.example.org/db?authSource=admin"),
    ("mongodb://u:it's $(x) `y` p/w@h:1/?a=b", "mongodb://u:***@h:1/?a=b"),
    ("mongodb://127.0.0.1:27017/?retryWrites=false", "mongodb://127.0.0.1:27017/?retryWrites=false"),
    ("mongodb://user@host/", "mongodb://user@host/"),
])
def test_redact_hides_only_the_password(uri, shown):
    assert redact(uri) == shown


def test_embedded_server_requires_login_and_keeps_its_files_private(tmp_path):
    env = _embedded_env(tmp_path)
    started = _cli(["db", "start"], env)  # umask 022: the files must be private regardless
    assert started.returncode == 0, started.stderr
    try:
        db_dir = tmp_path / "data" / "db"
        password = json.loads((db_dir / "credentials.json").read_text())["password"]
        state = json.loads((db_dir / "server.json").read_text())
        assert password not in started.stdout + started.stderr and "crystalgen:***@127.0.0.1" in started.stdout
        assert "password" not in state and password not in (db_dir / "server.json").read_text()

        modes = {p.relative_to(db_dir): stat.S_IMODE(p.stat().st_mode) for p in [db_dir, *db_dir.rglob("*")]}
        assert modes[Path(".")] == 0o700 and modes[Path("credentials.json")] == 0o600
        loose = {str(p): oct(m) for p, m in modes.items() if m & 0o077}
        assert not loose, f"group/other can access {loose}"

        assert _listen_addresses(state["port"]) == {"0100007F"}  # 127.0.0.1 only
        anonymous = MongoClient("127.0.0.1", state["port"], serverSelectionTimeoutMS=3000)
        with pytest.raises(OperationFailure) as refused:
            anonymous.cg.things.find_one()
        assert refused.value.code == 13  # Unauthorized
        anonymous.close()

        uri = _cli(["db", "uri"], env).stdout.strip()  # hands the login out, by design
        assert f"crystalgen:{password}@127.0.0.1:{state['port']}" in uri
        client = MongoClient(uri)
        client.cg.things.insert_one({"name": "TaB2"})
        assert client.cg.things.find_one({"name": "TaB2"}) is not None
        client.close()
        status = _cli(["db", "status"], env)
        assert status.returncode == 0 and "answers ping" in status.stdout and password not in status.stdout
    finally:
        _cli(["db", "stop"], env)


def test_configured_password_is_never_printed(tmp_path):
    uri = "mongodb://alice:Sup3r-secret-pw@127.0.0.1:1/?serverSelectionTimeoutMS=300"
    env = {"CRYSTALGEN_MONGODB_URI": uri, "CRYSTALGEN_CONFIG": str(tmp_path / "none.yaml")}
    for args in (["db", "start"], ["db", "status"], ["hpc", "init", "--out", str(tmp_path / "cfg")]):
        result = _cli(args, env)
        assert "Sup3r-secret-pw" not in result.stdout + result.stderr, args
    assert "alice:***@127.0.0.1:1" in _cli(["db", "status"], env).stderr


@pytest.mark.parametrize("recorded", ["legacy", "reused pid"])
def test_stop_and_status_refuse_a_pid_that_is_not_the_server(tmp_path, recorded):
    env = _embedded_env(tmp_path)
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        db_dir = tmp_path / "data" / "db"
        db_dir.mkdir(parents=True)
        state = {"pid": sleeper.pid, "port": 27017, "storage_path": str(db_dir / "storage"),
                 "log_path": str(db_dir / "server.log")}
        if recorded == "reused pid":  # a server that died; the kernel gave its pid to `sleep`
            state.update(start_time=1, cmdline=[sys.executable, "secantusd-py", "--port", "27017"],
                         username="crystalgen")
        (db_dir / "server.json").write_text(json.dumps(state))

        status = _cli(["db", "status"], env)
        assert status.returncode == 1
        assert f"names pid {sleeper.pid}, which now runs `sleep 1000`" in status.stderr
        assert "running" not in status.stdout
        stop = _cli(["db", "stop"], env)
        assert stop.returncode == 1 and "leaving it alone" in stop.stderr and "Traceback" not in stop.stderr
        time.sleep(0.2)
        assert sleeper.poll() is None, "db stop killed a process that is not the database server"
        assert (db_dir / "server.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    """Settings for an embedded server of this test's own (started on first use)."""
    monkeypatch.setenv("CRYSTALGEN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CRYSTALGEN_MONGODB_URI", "")
    monkeypatch.setenv("CRYSTALGEN_CONFIG", str(tmp_path / "none.yaml"))
    get_settings.cache_clear()
    yield get_settings()
    server.stop(get_settings().data_dir)
    get_settings.cache_clear()


def test_killed_server_fails_the_next_call_fast_and_is_not_replaced(embedded):
    client = mongo_client()  # starts the embedded server
    client.cg.things.insert_one({"name": "TaB2"})
    store = job_store()
    store.connect()
    state = server.read_state(embedded.data_dir)
    storage = Path(state.storage_path)

    os.kill(state.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while identity_of(state.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)

    for factory in (mongo_client, job_store, launchpad):
        began = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as lost:
            factory()
        assert time.monotonic() - began < 2, factory.__name__
    message = str(lost.value)
    assert "crystalgen:***@127.0.0.1" in message and state.password not in message
    assert "stopped while this process was using it" in message and "Rerun the command" in message

    began = time.monotonic()  # clients opened before the death give up within the URI's short timeout
    with pytest.raises(DatabaseUnavailable, match="Rerun"):
        with database_errors():
            store.query_one({"uuid": "any"})
    assert time.monotonic() - began < 10
    with pytest.raises(PyMongoError):
        client.cg.things.find_one()

    assert _servers_on(storage) == [], "a replacement server was started"
    assert server.read_state(embedded.data_dir).pid == state.pid
