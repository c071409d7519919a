"""Start and stop one SecantusDB process with authentication on.

The server always runs as a separate process (``secantusd-py``; it is GPL-licensed and never
imported here), bound to 127.0.0.1, with umask 077 so its storage is owner-only, and with
crystalgen's own ``--config`` file so no stray ``secantusd.toml`` changes its settings.

SecantusDB's ``--auth`` has no localhost exception: a user can only be created by a server
running *without* ``--auth``. So a storage is provisioned once: start it without auth on a
fresh random port, create (or reset) our user, stop it, and from then on only start it with
``--auth``. Whatever another local user might have done in that second shows up afterwards:
any database user but ours makes the start fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

from crystalgen.db import credentials as creds_mod
from crystalgen.db.credentials import Credentials
from crystalgen.db.identity import ProcessIdentity, identity_of

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
#: clients of the embedded server give up on it after this long, not pymongo's default 30 s
SELECTION_TIMEOUT_MS = 3000
CONFIG_FILE = Path(__file__).resolve().parents[1] / "assets" / "secantusd.toml"


class ServerError(RuntimeError):
    """The embedded server could not be started, found or stopped."""


class CredentialsRejected(ServerError):
    """The storage's user does not accept the password we hold."""


@dataclass
class ServerState:
    """A running server: where it listens, which process it is, and how to log in."""

    pid: int
    port: int
    storage_path: str
    log_path: str
    start_time: int | None = None  # /proc/<pid>/stat field 22: with cmdline, tells our process from a reused pid
    cmdline: list[str] | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # from credentials.json; never in the state file

    @property
    def uri(self) -> str:
        """The full URI, credentials included: hand it only to clients, print ``redact(uri)``."""
        login, auth_source = "", ""
        if self.username and self.password:
            login = f"{quote_plus(self.username)}:{quote_plus(self.password)}@"
            auth_source = "authSource=admin&"
        return (f"mongodb://{login}{HOST}:{self.port}/?{auth_source}retryWrites=false"
                f"&serverSelectionTimeoutMS={SELECTION_TIMEOUT_MS}")

    def recorded(self) -> dict:
        """What the state file keeps: everything but the password."""
        return {k: v for k, v in asdict(self).items() if k != "password"}

    def is_process(self, current: ProcessIdentity | None) -> bool:
        return (current is not None and self.start_time is not None
                and current.start_time == self.start_time and list(current.cmdline) == list(self.cmdline or []))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def answers_ping(port: int, timeout_ms: int = 1000) -> bool:
    """Ping needs no login, so this says whether anything serves the port, not whether we may use it."""
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
        return identity_of(pid) is not None or not Path("/proc").is_dir()


def terminate(pid: int, identity: ProcessIdentity | None = None) -> None:
    """SIGTERM, then SIGKILL after a grace period (only if ``identity``, when given, still holds the pid)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return
        time.sleep(0.1)
    if identity is not None and identity_of(pid) != identity:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _server_executable() -> str:
    beside_python = Path(sys.executable).with_name("secantusd-py")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("secantusd-py")
    if not found:
        raise ServerError("secantusd-py not found: install the project (pip install -e .) to get SecantusDB")
    return found


def _spawn(storage: str, port: int, log_path: Path | None, auth: bool) -> subprocess.Popen:
    args = [_server_executable(), "--config", str(CONFIG_FILE), "--host", HOST, "--port", str(port),
            "--storage-path", storage, "--standalone", "--log-level", "WARNING"] + (["--auth"] if auth else [])
    log_fd = os.open(log_path or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        return subprocess.Popen(args, stdout=log_fd, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, umask=0o077)
    finally:
        os.close(log_fd)


def _wait_ready(proc: subprocess.Popen, port: int, log_path: Path | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"database server exited with code {proc.returncode} on start; see {log_path}")
        if answers_ping(port, timeout_ms=300):
            return
        time.sleep(0.2)
    _stop_child(proc)
    raise ServerError(f"database server did not answer on {HOST}:{port} within {START_TIMEOUT_S:.0f} s; see {log_path}")


def _stop_child(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _admin_client(port: int, credentials: Credentials | None = None):
    from pymongo import MongoClient

    login = {"username": credentials.username, "password": credentials.password, "authSource": "admin"} \
        if credentials else {}
    return MongoClient(HOST, port, directConnection=True, serverSelectionTimeoutMS=5000, **login)


def _users(client) -> list[str]:
    # usersInfo with forAllDBs answers [] on SecantusDB 0.7.0b3; admin.system.users lists them all
    return sorted(doc["_id"] for doc in client.admin["system.users"].find({}, {"_id": 1}))


def _provision(storage: str, credentials: Credentials, log_path: Path | None) -> None:
    """Create our user (or reset its password) on a server briefly run without --auth on a random port."""
    from pymongo.errors import PyMongoError

    port = free_port()
    proc = _spawn(storage, port, log_path, auth=False)
    try:
        _wait_ready(proc, port, log_path)
        client = _admin_client(port)
        try:
            if f"admin.{credentials.username}" in _users(client):
                client.admin.command("updateUser", credentials.username, pwd=credentials.password)
            else:
                client.admin.command("createUser", credentials.username, pwd=credentials.password,
                                     roles=[{"role": "root", "db": "admin"}])
        finally:
            client.close()
    except PyMongoError as exc:
        raise ServerError(f"could not create the database user in {storage}: {exc}") from exc
    finally:
        _stop_child(proc)


def _check_login(port: int, credentials: Credentials, storage: str, just_provisioned: bool) -> None:
    from pymongo.errors import OperationFailure, PyMongoError

    client = _admin_client(port, credentials)
    try:
        client.admin.command("ping")
        if just_provisioned:
            strangers = [u for u in _users(client) if u != f"admin.{credentials.username}"]
            if strangers:
                raise ServerError(f"{storage} holds database users crystalgen did not create: {', '.join(strangers)}; "
                                  "move the storage aside and start again")
    except OperationFailure as exc:
        raise CredentialsRejected(f"the database in {storage} does not accept the stored credentials ({exc.code})") \
            from exc
    except PyMongoError as exc:
        raise ServerError(f"database server on port {port} did not answer after login: {exc}") from exc
    finally:
        client.close()


def launch(storage_path: str | Path, port: int | None = None, log_path: Path | None = None,
           credentials: Credentials | None = None) -> ServerState:
    """Start a server that requires login and wait until it answers; new credentials unless given.

    Credentials not yet ``provisioned`` are first created in the storage (see the module doc).
    """
    storage = str(storage_path)
    if storage == ":memory:":
        raise ServerError("':memory:' storage loses its users on the restart that turns on authentication; "
                          "give a directory")
    Path(storage).mkdir(mode=0o700, parents=True, exist_ok=True)
    credentials = credentials or creds_mod.generate()
    if not credentials.provisioned:
        _provision(storage, credentials, log_path)
    port = port or free_port()
    proc = _spawn(storage, port, log_path, auth=True)
    try:
        _wait_ready(proc, port, log_path)
        _check_login(port, credentials, storage, just_provisioned=not credentials.provisioned)
    except ServerError:
        _stop_child(proc)
        raise
    identity = identity_of(proc.pid)
    return ServerState(pid=proc.pid, port=port, storage_path=storage, log_path=str(log_path or os.devnull),
                       start_time=identity.start_time if identity else None,
                       cmdline=list(identity.cmdline) if identity else None,
                       username=credentials.username, password=credentials.password)
