"""The shipped Ta-W-B reference phases as labelled known structures (what a campaign's references give)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from crystalgen.known import KnownStructure, labelled

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "flows" / "assets" / "references" / "tawb_constructed.json"


@cache
def _phases() -> tuple:
    return tuple((p["name"], p["structure"]) for p in json.loads(REFERENCE_FILE.read_text())["phases"])


def reference_phases() -> list[KnownStructure]:
    """Fresh ``reference:<name>`` entries (Ta, W, B, TaB2, TaB, Ta3B2, W2B, WB_beta, WB2_AlB2, WB2_ReB2, TaW_B2)."""
    return labelled("reference", _phases())


def reference(name: str):
    return next(k.structure for k in reference_phases() if k.label == f"reference:{name}")
