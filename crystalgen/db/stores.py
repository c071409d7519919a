"""maggma stores on the configured database that carry no credentials when serialised.

jobflow's FireWorks manager puts the job store into every firework spec (and FireWorks writes specs
into each launch directory as FW.json). A store built from a URI would carry the password there. These
stores serialise only their collection name and read the URI and database from the settings of the
process that connects, i.e. the worker's (``crystalgen_env.sh`` on clusters).
"""

from __future__ import annotations

from maggma.stores import GridFSStore, MongoStore


def _connection(store) -> tuple[str, str]:
    from crystalgen.db.connect import mongo_client, mongo_uri
    from crystalgen.settings import get_settings

    settings = get_settings()
    mongo_client(settings).close()  # fail early, with the one clear message
    store.mongoclient_kwargs = {"retryWrites": False, **(store.mongoclient_kwargs or {})}
    return mongo_uri(settings), settings.database


class _FromSettings:
    """Connect with this process's settings when first used, not with what was serialised."""

    def __init__(self, collection_name: str, **kwargs) -> None:
        super().__init__(database="", collection_name=collection_name, **kwargs)

    def connect(self, force_reset: bool = False) -> None:
        if self._coll is None or force_reset:
            self.uri, self.database = _connection(self)
        super().connect(force_reset=force_reset)


class SettingsMongoStore(_FromSettings, MongoStore):
    """A collection of the configured database (documents)."""


class SettingsGridFSStore(_FromSettings, GridFSStore):
    """A GridFS bucket of the configured database (large outputs)."""
