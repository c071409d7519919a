"""Lifecycle of the embedded MongoDB wire-protocol server (SecantusDB).

The server always runs as a separate process (``secantusd-py``; it is GPL-licensed and never
imported here), bound to 127.0.0.1, with its storage under ``<data_dir>/db``. Its pid and port go
to ``<data_dir>/db/server.json`` so ``status`` and ``stop`` from any later process can find it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class ServerError(RuntimeError):
    """The embedded server could not be started, found or stopped."""


@dataclass
class ServerState:
    pid: int
    port: int
    storage_path: str
    log_path: str

    @property
    def uri(self) -> str:
        return f"mongodb://{HOST}:{self.port}/?retryWrites=false"


def state_file(data_dir: Path) -> Path:
    return data_dir / "db" / "server.json"


def read_state(data_dir: Path) -> ServerState | None:
    path = state_file(data_dir)
    if not path.is_file():
        return None
    try:
        return ServerState(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as dead
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def answers_ping(port: int, timeout_ms: int = 1000) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client = MongoClient(HOST, port, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def running_state(data_dir: Path) -> ServerState | None:
    """The recorded server if its process is still alive, else None."""
    state = read_state(data_dir)
    if state is not None and is_alive(state.pid):
        return state
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _server_executable() -> str:
    beside_python = Path(sys.executable).with_name("secantusd-py")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("secantusd-py")
    if not found:
        raise ServerError("secantusd-py not found: install the project (pip install -e .) to get SecantusDB")
    return found


def launch(storage_path: str | Path, port: int | None = None, log_path: Path | None = None) -> ServerState:
    """Start a server process in its own session and wait until it answers ping."""
    port = port or free_port()
    storage = str(storage_path)
    if storage != ":memory:":
        Path(storage).mkdir(parents=True, exist_ok=True)
    log_path = log_path or Path(os.devnull)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [_server_executable(), "--host", HOST, "--port", str(port), "--storage-path", storage,
             "--standalone", "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"database server exited with code {proc.returncode} on start; see {log_path}")
        if answers_ping(port, timeout_ms=300):
            return ServerState(pid=proc.pid, port=port, storage_path=storage, log_path=str(log_path))
        time.sleep(0.2)
    terminate(proc.pid)
    raise ServerError(f"database server did not answer on {HOST}:{port} within {START_TIMEOUT_S:.0f} s; see {log_path}")


def start(data_dir: Path, port: int | None = None) -> tuple[ServerState, bool]:
    """Start the embedded server for ``data_dir`` unless it already runs. Returns (state, started)."""
    state = running_state(data_dir)
    if state is not None:
        return state, False
    db_dir = data_dir / "db"
    db_dir.mkdir(parents=True, exist_ok=True)
    lock = db_dir / "start.lock"
    import fcntl  # serialise concurrent starts from several processes on one node

    with open(lock, "w") as lock_fh:
        fcntl.flock(lock_fh, fcntl.LOCK_EX)
        state = running_state(data_dir)
        if state is not None:
            return state, False
        state = launch(db_dir / "storage", port=port, log_path=db_dir / "server.log")
        tmp = state_file(data_dir).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.replace(tmp, state_file(data_dir))
        return state, True


def terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL after a grace period."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(data_dir: Path) -> ServerState | None:
    """Stop the recorded server by its pid. Returns the stopped state, or None if none was running."""
    state = read_state(data_dir)
    if state is None:
        return None
    was_running = is_alive(state.pid)
    if was_running:
        terminate(state.pid)
    state_file(data_dir).unlink(missing_ok=True)
    return state if was_running else None
