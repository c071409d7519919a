"""``crystalgen campaign validate | plan | run`` (flows issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the campaign commands to the root app (called through the crystalgen.cli entry point)."""
