"""Shared test set-up: offline, one database server per test session, a fresh database per test."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MATGL_BACKEND", "PYG")
# potential-check passes are cached per user; tests keep theirs to themselves
if "CRYSTALGEN_CACHE_DIR" not in os.environ:
    os.environ["CRYSTALGEN_CACHE_DIR"] = tempfile.mkdtemp(prefix="crystalgen-test-cache-")
    atexit.register(shutil.rmtree, os.environ["CRYSTALGEN_CACHE_DIR"], True)

import pytest

from crystalgen.db import server
from crystalgen.settings import get_settings


@pytest.fixture(scope="session")
def db_server(tmp_path_factory):
    """One SecantusDB process for the whole session, on a free port, storage in a temp dir, login
    required (as the embedded server always does): every DB test goes through authentication."""
    storage = tmp_path_factory.mktemp("secantus")
    state = server.launch(storage, log_path=storage / "server.log")
    yield state
    server.terminate(state.pid)


@pytest.fixture
def settings(db_server, tmp_path, monkeypatch):
    """Settings pointing at the session server with a database of this test's own."""
    monkeypatch.setenv("CRYSTALGEN_MONGODB_URI", db_server.uri)
    monkeypatch.setenv("CRYSTALGEN_DATABASE", f"test_{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("CRYSTALGEN_DATA_DIR", str(tmp_path / "crystalgen-data"))
    monkeypatch.setenv("CRYSTALGEN_CONFIG", str(tmp_path / "no-such-config.yaml"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def crystalgen_env(monkeypatch):
    """``crystalgen_env(cache_dir=..., matgl_models=None)``: set (None: unset) CRYSTALGEN_* variables
    for one test; settings are re-read after each call and after the test."""

    def set_env(**values) -> None:
        for name, value in values.items():
            variable = f"CRYSTALGEN_{name.upper()}"
            if value is None:
                monkeypatch.delenv(variable, raising=False)
            else:
                monkeypatch.setenv(variable, str(value))
        get_settings.cache_clear()

    yield set_env
    get_settings.cache_clear()
