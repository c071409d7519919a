"""Secrets on screen and on disk: the one redaction function and the one way to write a secret file.

Database URIs carry passwords. Anything crystalgen prints or puts into an error message goes
through :func:`redact`; every file that holds a secret (credentials, launchpad/qadapter files,
job environment files, server state) is written by :func:`write_private`, which creates it
owner-only from the start instead of tightening its mode after the secret is already on disk.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote

# scheme://user:password@hosts - the password runs to the last '@' before the host list
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@]*):(?P<password>.*)@(?P<hosts>[^@/?]*(?:[/?].*)?)$",
                       re.DOTALL)


def uri_password(uri: str) -> str | None:
    """The password part of a URI as written in it (None when there is none)."""
    match = _USERINFO.match(uri or "")
    return match.group("password") if match else None


def redact(uri: str) -> str:
    """``mongodb://user:secret@host/`` -> ``mongodb://user:***@host/``; URIs without a password unchanged."""
    match = _USERINFO.match(uri or "")
    if not match or not match.group("password"):
        return uri
    return f"{match.group('head')}:***@{match.group('hosts')}"


def scrub(text: str, uri: str | None) -> str:
    """``text`` (e.g. a driver's error message) with ``uri`` and its password, in any spelling, redacted."""
    if not uri:
        return text
    text = text.replace(uri, redact(uri))
    password = uri_password(uri)
    if password:
        for spelling in {password, unquote(password), quote_plus(unquote(password)), quote(unquote(password))}:
            if len(spelling) >= 4:  # shorter ones would garble the message; drivers never echo passwords anyway
                text = text.replace(spelling, "***")
    return text


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with the leaf owner-only (0700), tightening an existing leaf."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically as a 0600 file (created with that mode, then renamed over)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
