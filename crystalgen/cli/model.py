"""``crystalgen train | sample | evaluate``: the generative-model commands (models issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the model commands to the root app."""
