"""``crystalgen db start | status | stop | uri``: the embedded database server.

Only ``db uri`` prints a password: handing the login to mongosh, pymongo and lpad is its job.
Everything else shows URIs redacted (``mongodb://user:***@host/``).
"""

from __future__ import annotations

import typer
from rich.console import Console

from crystalgen.cli.errors import fail
from crystalgen.db import server
from crystalgen.db.connect import DatabaseUnavailable, mongo_client, mongo_uri
from crystalgen.db.private import redact
from crystalgen.settings import get_settings

db_app = typer.Typer(help="Start, inspect and stop the embedded database (or show the configured one).",
                     no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)  # a URI is never folded across lines


@db_app.command()
def start() -> None:
    """Start the embedded server (nothing to do when a MongoDB URI is configured)."""
    settings = get_settings()
    if settings.mongodb_uri:
        console.print(f"A MongoDB URI is configured ({redact(settings.mongodb_uri)}); no embedded server is started.")
        return
    try:
        state, started = server.start(settings.data_dir, port=settings.db_port)
    except server.ServerError as exc:
        fail(f"could not start the embedded database: {exc}")
    verb = "started" if started else "already running"
    console.print(f"embedded database {verb}: pid {state.pid}, {redact(state.uri)}, storage {state.storage_path}; "
                  "`crystalgen db uri` prints the URI with its password")


@db_app.command()
def status() -> None:
    """Say whether the database runs and answers ping (exit 3: not running; 1: the state file names another process)."""
    settings = get_settings()
    if settings.mongodb_uri:
        try:
            mongo_client(settings).close()
        except DatabaseUnavailable as exc:
            fail(str(exc))
        console.print(f"configured database {redact(settings.mongodb_uri)}: answers ping")
        return
    state, found = server.inspect(settings.data_dir)
    if found == server.FOREIGN:
        fail(server.foreign_message(settings.data_dir, state))
    if found == server.GONE:
        console.print("embedded database: not running")
        raise typer.Exit(3)
    ping = "answers ping" if server.answers_ping(state.port) else "DOES NOT answer ping"
    console.print(f"embedded database: running, pid {state.pid}, {redact(state.uri)}, {ping}")


@db_app.command()
def stop() -> None:
    """Stop the embedded server, after checking its recorded pid is still that server."""
    settings = get_settings()
    if settings.mongodb_uri:
        console.print("A MongoDB URI is configured; crystalgen never stops an external server.")
        return
    try:
        state = server.stop(settings.data_dir)
    except server.ServerError as exc:
        fail(str(exc))
    console.print(f"embedded database stopped (pid {state.pid})" if state else "embedded database: not running")


@db_app.command()
def uri() -> None:
    """Print the MongoDB URI every crystalgen command uses, WITH its user and password (this command
    exists to hand the login to mongosh, pymongo and lpad: treat its output as a secret). Starts the
    embedded server if needed."""
    try:
        typer.echo(mongo_uri(get_settings()))
    except DatabaseUnavailable as exc:
        fail(str(exc))
