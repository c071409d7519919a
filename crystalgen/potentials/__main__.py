"""``python -m crystalgen.potentials``: check a potential spec, or record its own reference energies."""

from __future__ import annotations

import json

import typer

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def check(spec: str = typer.Argument(..., help="potential spec, e.g. sevenn:7net-0")) -> None:
    """Load SPEC and run the sanity guard on it (exit 1 with the reason when it fails)."""
    from crystalgen.potentials import PotentialSanityError, check_potential, load_potential

    try:
        print(json.dumps(check_potential(load_potential(spec), use_cache=False), indent=1))
    except (ValueError, PotentialSanityError) as exc:
        typer.echo(f"error: {spec}: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def record(
    spec: str = typer.Argument(..., help="potential spec"),
    note: str = typer.Option(..., help="why these energies are right (e.g. 'matches the authors' test values')"),
) -> None:
    """Record SPEC's energies on the reference crystals as its own; later checks hold it to them."""
    from crystalgen.potentials import PotentialSanityError, load_potential
    from crystalgen.potentials.guard import record_references, references_file

    try:
        entry = record_references(load_potential(spec), note)
    except (ValueError, PotentialSanityError) as exc:
        typer.echo(f"error: {spec}: {exc}", err=True)
        raise typer.Exit(1) from exc
    print(json.dumps(entry, indent=1))
    print(f"recorded in {references_file()}")


if __name__ == "__main__":
    app()
