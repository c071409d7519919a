"""Database access: the embedded server's lifecycle and the one connection factory."""

from crystalgen.db.connect import DatabaseUnavailable, job_store, launchpad, mongo_client, mongo_uri

__all__ = ["DatabaseUnavailable", "job_store", "launchpad", "mongo_client", "mongo_uri"]
