"""``crystalgen campaign submit | status``, ``candidates``, ``resubmit``, ``hpc init`` (hpc issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the cluster commands to the root app (called through the crystalgen.cli entry point)."""
