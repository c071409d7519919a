"""``crystalgen db start | status | stop | uri``: the embedded database server."""

from __future__ import annotations

import typer
from rich.console import Console

from crystalgen.cli.errors import fail
from crystalgen.db import server
from crystalgen.db.connect import DatabaseUnavailable, mongo_client, mongo_uri
from crystalgen.settings import get_settings

db_app = typer.Typer(help="Start, inspect and stop the embedded database (or show the configured one).",
                     no_args_is_help=True)
console = Console()




@db_app.command()
def start() -> None:
    """Start the embedded server (nothing to do when a MongoDB URI is configured)."""
    settings = get_settings()
    if settings.mongodb_uri:
        console.print(f"A MongoDB URI is configured ({settings.mongodb_uri}); no embedded server is started.")
        return
    try:
        state, started = server.start(settings.data_dir, port=settings.db_port)
    except server.ServerError as exc:
        fail(f"could not start the embedded database: {exc}")
    verb = "started" if started else "already running"
    console.print(f"embedded database {verb}: pid {state.pid}, {state.uri}, storage {state.storage_path}")


@db_app.command()
def status() -> None:
    """Say whether the database runs and answers ping."""
    settings = get_settings()
    if settings.mongodb_uri:
        try:
            mongo_client(settings).close()
        except DatabaseUnavailable as exc:
            fail(str(exc))
        console.print(f"configured database {settings.mongodb_uri}: answers ping")
        return
    state = server.running_state(settings.data_dir)
    if state is None:
        console.print("embedded database: not running")
        raise typer.Exit(3)
    ping = "answers ping" if server.answers_ping(state.port) else "DOES NOT answer ping"
    console.print(f"embedded database: running, pid {state.pid}, {state.uri}, {ping}")


@db_app.command()
def stop() -> None:
    """Stop the embedded server by its recorded pid."""
    settings = get_settings()
    if settings.mongodb_uri:
        console.print("A MongoDB URI is configured; crystalgen never stops an external server.")
        return
    state = server.stop(settings.data_dir)
    console.print(f"embedded database stopped (pid {state.pid})" if state else "embedded database: not running")


@db_app.command()
def uri() -> None:
    """Print the MongoDB URI every crystalgen command uses (starts the embedded server if needed)."""
    try:
        typer.echo(mongo_uri(get_settings()))
    except DatabaseUnavailable as exc:
        fail(str(exc))
