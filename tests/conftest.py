"""Shared test set-up: offline, single-threaded numerics, one database server per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MATGL_BACKEND", "PYG")
