"""The embedded server's one user: generated at first start, kept owner-only next to its storage.

``credentials.json`` (0600, in the 0700 ``data_dir/db``) holds the user name, a random password
and whether the storage already has that user. Deleting the file and starting again generates
new credentials and resets the user's password: only the owner of the storage can do that, and
the owner can read the data files anyway.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from crystalgen.db.private import write_private

USERNAME = "crystalgen"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    provisioned: bool = False  # the storage has this user with this password

    def provisioned_copy(self) -> Credentials:
        return replace(self, provisioned=True)


def generate() -> Credentials:
    return Credentials(USERNAME, secrets.token_urlsafe(24))


def load(path: Path) -> Credentials | None:
    """The stored credentials, or None when the file is missing or unreadable as ours."""
    try:
        data = json.loads(Path(path).read_text())
        return Credentials(str(data["username"]), str(data["password"]), bool(data.get("provisioned", False)))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def save(path: Path, credentials: Credentials) -> None:
    write_private(path, json.dumps(asdict(credentials), indent=2) + "\n")
