"""``crystalgen data ...``: import, inspect and build datasets."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Import, inspect and build structure datasets.", no_args_is_help=True)

# Commands that live in other modules attach themselves to ``data_app`` when imported.
from crystalgen.cli import data_build  # noqa: E402,F401
