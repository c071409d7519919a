"""Database access: the embedded server's lifecycle, the one connection factory, URI redaction."""

from crystalgen.db.connect import (
    DatabaseUnavailable,
    database_errors,
    job_store,
    launchpad,
    mongo_client,
    mongo_uri,
)
from crystalgen.db.private import redact

__all__ = ["DatabaseUnavailable", "database_errors", "job_store", "launchpad", "mongo_client", "mongo_uri", "redact"]
