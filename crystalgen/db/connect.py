"""The one connection factory: pymongo client, jobflow JobStore and FireWorks LaunchPad.

All three come from the same settings. With ``mongodb_uri`` configured (mongod, Atlas) we only
connect. Without it the embedded server is started on demand and its URI used.
jobflow and FireWorks are imported inside the functions that need them, so the ML core stays
importable without them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from crystalgen.db import server
from crystalgen.settings import Settings, get_settings

SERVER_SELECTION_TIMEOUT_MS = 5000
CLIENT_OPTIONS = {"retryWrites": False, "serverSelectionTimeoutMS": SERVER_SELECTION_TIMEOUT_MS}


class DatabaseUnavailable(RuntimeError):
    """The configured database cannot be reached; the message says which URI and how to fix it."""


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password:
        return uri.replace(f":{parts.password}@", ":***@")
    return uri


def mongo_uri(settings: Settings | None = None, start: bool = True) -> str:
    """The URI to use: the configured one, or the embedded server's (started if ``start``)."""
    settings = settings or get_settings()
    if settings.mongodb_uri:
        return settings.mongodb_uri
    state = server.running_state(settings.data_dir)
    if state is None:
        if not start:
            raise DatabaseUnavailable(
                f"the embedded database is not running (data dir {settings.data_dir}); start it with `crystalgen db start`"
            )
        try:
            state, _ = server.start(settings.data_dir, port=settings.db_port)
        except server.ServerError as exc:
            raise DatabaseUnavailable(f"could not start the embedded database: {exc}") from exc
    return state.uri


def mongo_client(settings: Settings | None = None, start: bool = True) -> MongoClient:
    """A connected client (ping checked) or a DatabaseUnavailable naming the URI."""
    settings = settings or get_settings()
    uri = mongo_uri(settings, start=start)
    try:
        client = MongoClient(uri, **CLIENT_OPTIONS)
        client.admin.command("ping")
    except (PyMongoError, ValueError) as exc:
        raise DatabaseUnavailable(
            f"cannot reach MongoDB at {_redact(uri)}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}\n"
            "Check that the server runs and the URI is right (setting mongodb_uri, env CRYSTALGEN_MONGODB_URI), "
            "or unset it to use the embedded server (`crystalgen db start`)."
        ) from exc
    return client


def job_store(settings: Settings | None = None):
    """jobflow JobStore: documents in ``outputs``, large data (``data`` key) in GridFS."""
    from jobflow import JobStore
    from maggma.stores import GridFSStore, MongoStore

    settings = settings or get_settings()
    mongo_client(settings).close()  # fail early with the clear message
    uri = mongo_uri(settings)
    docs = MongoStore.from_uri(uri, collection_name="outputs", database=settings.database)
    blobs = GridFSStore.from_uri(uri, collection_name="outputs_blobs", database=settings.database)
    return JobStore(docs, additional_stores={"data": blobs})


def launchpad(settings: Settings | None = None):
    """FireWorks LaunchPad on the same database, with race-free id allocation installed."""
    from fireworks import LaunchPad

    from crystalgen.db import fireworks_ids

    fireworks_ids.install()
    settings = settings or get_settings()
    mongo_client(settings).close()
    uri = mongo_uri(settings)
    lpad = LaunchPad(host=uri, name=settings.database, uri_mode=True, mongoclient_kwargs={"retryWrites": False})
    fireworks_ids.ensure_counters(lpad)
    return lpad
