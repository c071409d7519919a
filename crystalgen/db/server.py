"""Lifecycle of the embedded MongoDB wire-protocol server (SecantusDB) for one ``data_dir``.

Everything lives in ``<data_dir>/db`` (0700): the storage, ``credentials.json`` (the server's
user, 0600), ``server.log`` and ``server.json``, which records which process the server is (pid,
start time, command line) and its port so that ``status`` and ``stop`` from any later process can
find it and never mistake another process that later got the same pid for it.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from crystalgen.db import credentials as creds_mod
from crystalgen.db.identity import identity_of
from crystalgen.db.launcher import (  # noqa: F401 - launch/terminate/answers_ping are this module's API too
    HOST,
    CredentialsRejected,
    ServerError,
    ServerState,
    answers_ping,
    free_port,
    launch,
    terminate,
)
from crystalgen.db.private import private_dir, write_private

RUNNING, GONE, FOREIGN = "running", "gone", "foreign"

# the embedded server each data_dir's clients in this process were handed (see crystalgen.db.connect)
_in_use: dict[Path, ServerState] = {}


class ForeignProcess(ServerError):
    """The state file names a live process that is not (or cannot be shown to be) our server."""


def db_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "db"


def state_file(data_dir: Path) -> Path:
    return db_dir(data_dir) / "server.json"


def credentials_file(data_dir: Path) -> Path:
    return db_dir(data_dir) / "credentials.json"


def read_state(data_dir: Path) -> ServerState | None:
    """The recorded server with the stored login, or None without a readable state file."""
    try:
        state = ServerState(**json.loads(state_file(data_dir).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    stored = creds_mod.load(credentials_file(data_dir))
    if stored is not None:
        state.username, state.password = stored.username, stored.password
    return state


def inspect(data_dir: Path) -> tuple[ServerState | None, str]:
    """(recorded state, RUNNING | GONE | FOREIGN); GONE also when nothing is recorded."""
    state = read_state(data_dir)
    if state is None:
        return None, GONE
    current = identity_of(state.pid)
    if current is None:
        return state, GONE
    return state, RUNNING if state.is_process(current) else FOREIGN


def foreign_message(data_dir: Path, state: ServerState) -> str:
    current = identity_of(state.pid)
    now = current.describe() if current else "nothing"
    if state.start_time is None:
        why = "the state file (written by an older crystalgen) does not say which process the server was"
    else:
        why = "that process is not the database server crystalgen started"
    return (f"{state_file(data_dir)} names pid {state.pid}, which now runs `{now}`, but {why}; leaving it alone. "
            f"If the database server is no longer running, delete {state_file(data_dir)}.")


def running_state(data_dir: Path) -> ServerState | None:
    """The recorded server if that very process still runs, else None.

    Raises ForeignProcess for a live pid recorded without a process identity (an older state
    file): it may be our server still holding the storage, so nothing may start beside it.
    """
    state, status = inspect(data_dir)
    if status == FOREIGN and state.start_time is None:
        raise ForeignProcess(foreign_message(data_dir, state))
    return state if status == RUNNING else None


def _tighten(directory: Path) -> None:
    """Owner-only modes for what older crystalgen versions created world-readable (755/644)."""
    for root, dirs, files in os.walk(directory):
        for name, mode in [(d, 0o700) for d in dirs] + [(f, 0o600) for f in files]:
            path = Path(root) / name
            if not path.is_symlink() and path.stat().st_mode & 0o077:
                path.chmod(mode)


def start(data_dir: Path, port: int | None = None) -> tuple[ServerState, bool]:
    """Start the embedded server for ``data_dir`` unless it already runs. Returns (state, started)."""
    state = running_state(data_dir)
    if state is not None:
        return state, False
    directory = private_dir(db_dir(data_dir))
    _tighten(directory)
    lock_fd = os.open(directory / "start.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # serialise concurrent starts from several processes on one node
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        state = running_state(data_dir)
        if state is not None:
            return state, False
        path = credentials_file(data_dir)
        login = creds_mod.load(path)
        if login is None:  # first start (or a reset): saved before the user exists, so a crash cannot lose it
            login = creds_mod.generate()
            creds_mod.save(path, login)
        try:
            state = launch(directory / "storage", port=port, log_path=directory / "server.log", credentials=login)
        except CredentialsRejected as exc:
            raise ServerError(f"{exc}; delete {path} and start again to reset the password") from exc
        if not login.provisioned:
            creds_mod.save(path, login.provisioned_copy())
        write_private(state_file(data_dir), json.dumps(state.recorded(), indent=2))
        return state, True
    finally:
        os.close(lock_fd)


def stop(data_dir: Path) -> ServerState | None:
    """Stop the recorded server. Returns it, or None if none was running.

    Raises ForeignProcess, signalling nothing, when the recorded pid is now another process.
    """
    state, status = inspect(data_dir)
    if status == FOREIGN:
        raise ForeignProcess(foreign_message(data_dir, state))
    _in_use.pop(Path(data_dir), None)
    if state is None:
        return None
    if status == RUNNING:
        terminate(state.pid, identity_of(state.pid))
    state_file(data_dir).unlink(missing_ok=True)
    return state if status == RUNNING else None


def pin(data_dir: Path, state: ServerState) -> None:
    """Remember that this process's clients talk to ``state``'s server."""
    _in_use[Path(data_dir)] = state


def pinned(data_dir: Path) -> ServerState | None:
    return _in_use.get(Path(data_dir))
