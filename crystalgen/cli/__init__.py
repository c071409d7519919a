"""The ``crystalgen`` command line.

The core registers its own command groups here. The ``flows`` and ``hpc`` layers add theirs
through the ``crystalgen.cli`` entry-point group (each entry point is a ``register(app)``
function), so the core never imports the layers built on top of it.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

app = typer.Typer(
    name="crystalgen",
    help="High-throughput crystal discovery: generate, pre-relax, relax and rank crystal structures.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _register_core() -> None:
    from crystalgen.cli import data, db, model

    app.add_typer(db.db_app, name="db")
    app.add_typer(data.data_app, name="data")
    model.register(app)


def _register_plugins() -> None:
    for entry_point in sorted(entry_points(group="crystalgen.cli"), key=lambda ep: ep.name):
        entry_point.load()(app)


def main() -> None:
    _register_core()
    _register_plugins()
    app()
