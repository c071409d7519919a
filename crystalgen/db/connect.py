"""The one connection factory: pymongo client, jobflow JobStore and FireWorks LaunchPad.

All three come from the same settings. With ``mongodb_uri`` configured (mongod, Atlas) we only
connect. Without it the embedded server is started on demand and its URI (with its login) used.
Once a process has been handed the embedded server, it sticks to that server: if the server dies,
the next call here raises DatabaseUnavailable instead of starting a replacement that the
process's open clients (job store, launchpad) would never see; their own calls fail after the
URI's short ``serverSelectionTimeoutMS``. A rerun starts the server again and resumes.
jobflow and FireWorks are imported inside the functions that need them, so the ML core stays
importable without them.
"""

from __future__ import annotations

from contextlib import contextmanager

from pymongo import MongoClient
from pymongo.errors import ConnectionFailure, PyMongoError

from crystalgen.db import server
from crystalgen.db.private import redact, scrub
from crystalgen.settings import Settings, get_settings

SERVER_SELECTION_TIMEOUT_MS = 5000  # unless the URI sets its own (the embedded server's does: 3 s)
OUTPUTS = "outputs"  # the job store's document collection


class DatabaseUnavailable(RuntimeError):
    """The configured database cannot be reached; the message says which URI and how to fix it."""


def mongo_uri(settings: Settings | None = None, start: bool = True) -> str:
    """The URI to use, credentials included: the configured one, or the embedded server's
    (started if ``start`` and this process was not already using one that has since died)."""
    settings = settings or get_settings()
    if settings.mongodb_uri:
        return settings.mongodb_uri
    data_dir = settings.data_dir
    try:
        state = server.running_state(data_dir)
    except server.ServerError as exc:
        raise DatabaseUnavailable(f"the embedded database: {exc}") from exc
    previous = server.pinned(data_dir)
    if previous is not None and (state is None or state.recorded() != previous.recorded()):
        raise DatabaseUnavailable(
            f"the embedded database at {redact(previous.uri)} (pid {previous.pid}) stopped while this process was "
            "using it; no replacement is started behind the back of open connections. Rerun the command: it starts "
            "the database again and resumes where it stopped."
        )
    if state is None:
        if not start:
            raise DatabaseUnavailable(
                f"the embedded database is not running (data dir {data_dir}); start it with `crystalgen db start`"
            )
        try:
            state, _ = server.start(data_dir, port=settings.db_port)
        except server.ServerError as exc:
            raise DatabaseUnavailable(f"could not start the embedded database: {exc}") from exc
    server.pin(data_dir, state)
    return state.uri


def unreachable(uri: str, exc: Exception, during_run: bool = False) -> DatabaseUnavailable:
    """The one message for a database that does not answer: URI redacted, what to do next."""
    detail = scrub(str(exc).splitlines()[0][:200] if str(exc) else "", uri)
    advice = ("Rerun the command once the database answers: it resumes where it stopped." if during_run else
              "Check that the server runs and the URI is right (setting mongodb_uri, env CRYSTALGEN_MONGODB_URI), "
              "or unset it to use the embedded server (`crystalgen db start`).")
    return DatabaseUnavailable(f"cannot reach MongoDB at {redact(uri)}: {exc.__class__.__name__}: {detail}\n{advice}")


@contextmanager
def database_errors(settings: Settings | None = None):
    """Turn a lost connection inside the block into DatabaseUnavailable (for commands to report in one line)."""
    try:
        yield
    except ConnectionFailure as exc:
        raise unreachable(mongo_uri(settings, start=False), exc, during_run=True) from exc


def mongo_client(settings: Settings | None = None, start: bool = True) -> MongoClient:
    """A connected client (ping checked) or a DatabaseUnavailable naming the URI."""
    settings = settings or get_settings()
    uri = mongo_uri(settings, start=start)
    options = {"retryWrites": False}
    if "serverselectiontimeoutms=" not in uri.lower():  # keyword arguments would override the URI's own
        options["serverSelectionTimeoutMS"] = SERVER_SELECTION_TIMEOUT_MS
    try:
        client = MongoClient(uri, **options)
        client.admin.command("ping")
    except (PyMongoError, ValueError) as exc:
        raise unreachable(uri, exc) from exc
    return client


def job_store(settings: Settings | None = None):
    """jobflow JobStore: documents in ``outputs``, large data (``data`` key) in GridFS.

    Its stores hold no URI: wherever it is deserialised (a FireWorks worker), it connects with that
    process's settings, so firework specs and launch directories never contain the password.
    """
    from jobflow import JobStore

    from crystalgen.db.indexes import ensure_job_store_indexes
    from crystalgen.db.stores import SettingsGridFSStore, SettingsMongoStore

    settings = settings or get_settings()
    client = mongo_client(settings)  # fail early with the clear message
    try:
        with database_errors(settings):
            ensure_job_store_indexes(client[settings.database][OUTPUTS])
    finally:
        client.close()
    return JobStore(SettingsMongoStore(OUTPUTS), additional_stores={"data": SettingsGridFSStore("outputs_blobs")})


def install_fireworks_workarounds() -> None:
    """Make every FireWorks LaunchPad in this process work well on SecantusDB (each is a no-op or
    equivalent on mongod): race-free ids (``fireworks_ids``), a checkout query its planner can index
    (``fireworks_query``), find-and-modify from indexes (``indexed_updates``)."""
    from crystalgen.db import fireworks_ids, fireworks_query, indexed_updates

    fireworks_ids.install()
    fireworks_query.install()
    indexed_updates.install()


def launchpad(settings: Settings | None = None):
    """FireWorks LaunchPad on the same database, with ``install_fireworks_workarounds`` applied and the
    indexes workers need (``crystalgen.db.indexes``)."""
    from fireworks import LaunchPad

    from crystalgen.db import fireworks_ids
    from crystalgen.db.indexes import ensure_fireworks_indexes

    install_fireworks_workarounds()
    settings = settings or get_settings()
    mongo_client(settings).close()
    uri = mongo_uri(settings)
    with database_errors(settings):
        lpad = LaunchPad(host=uri, name=settings.database, uri_mode=True, mongoclient_kwargs={"retryWrites": False})
        fireworks_ids.ensure_counters(lpad)
        ensure_fireworks_indexes(lpad)
    return lpad
