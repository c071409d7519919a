"""``crystalgen data ...``: import, inspect and build datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

data_app = typer.Typer(help="Import, inspect and build structure datasets.", no_args_is_help=True)
import_app = typer.Typer(help="Convert an external dataset into a crystalgen dataset file.", no_args_is_help=True)
data_app.add_typer(import_app, name="import")

console = Console()

_OUT = typer.Argument(..., help="Output dataset file (.jsonl or .jsonl.gz); written atomically.")
_SYMPREC = typer.Option(0.1, help="spglib tolerance (Å) for space groups that the input does not give.")
_KIND = typer.Option(None, help="'formation' or 'total' energy per atom (default: from the column name).")


def _track(items, total):
    from rich.progress import track

    return track(items, total=total, description="importing", console=Console(stderr=True))


def _finish(run, out: Path) -> None:
    """Run an importer, write its output, report counts and failures; errors exit 1."""
    from crystalgen.data.importers import ImporterError, write_import

    try:
        result = run()
        write_import(result, out)
    except (ImporterError, OSError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    console.print(f"imported {len(result.records)} of {result.n_rows} rows into {out} ({len(result.failures)} failed)")
    for failure in result.failures[:20]:
        console.print(f"  [yellow]failed[/] {failure.row}: {failure.reason}")
    if len(result.failures) > 20:
        console.print(f"  ... {len(result.failures) - 20} more failures listed in the dataset metadata")


def _kind(value: Optional[str]):
    if value not in (None, "formation", "total"):
        typer.secho(f"error: --energy-kind must be 'formation' or 'total', got {value!r}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    return value


@import_app.command("cdvae")
def import_cdvae_cmd(
    csv_file: Path = typer.Argument(..., help="CDVAE CSV with a 'cif' column."),
    out: Path = _OUT,
    energy_column: Optional[str] = typer.Option(None, help="Energy column (default: formation_energy_per_atom, heat_ref or energy_per_atom)."),
    energy_kind: Optional[str] = _KIND,
    id_column: str = typer.Option("material_id", help="Column with the structure id."),
    symprec: float = _SYMPREC,
) -> None:
    """Import a CDVAE-style CSV (carbon_24, perov_5, mp_20)."""
    from crystalgen.data.importers import import_cdvae

    kind = _kind(energy_kind)
    _finish(lambda: import_cdvae(csv_file, energy_column, kind, id_column, symprec, track=_track), out)


@import_app.command("aflow")
def import_aflow_cmd(
    table: Path = typer.Argument(..., help="AFLOW dataframe as .csv or .json."),
    out: Path = _OUT,
    id_column: str = typer.Option("auid", help="Column with the structure id."),
) -> None:
    """Import an AFLOW dataframe (pretty_formula, positions_fractional, geometry, nsites, ...)."""
    from crystalgen.data.importers import import_aflow

    _finish(lambda: import_aflow(table, id_column, track=_track), out)


@import_app.command("directory")
def import_directory_cmd(
    directory: Path = typer.Argument(..., help="Folder of CIF / POSCAR / CONTCAR / .vasp files."),
    out: Path = _OUT,
    energies: Optional[Path] = typer.Option(None, help="CSV with an id column (file name or stem) and an energy column."),
    id_column: str = typer.Option("id", help="Id column of the energy table."),
    energy_column: Optional[str] = typer.Option(None, help="Energy column of the energy table."),
    energy_kind: Optional[str] = _KIND,
    symprec: float = _SYMPREC,
) -> None:
    """Import a directory of structure files with an optional energy table."""
    from crystalgen.data.importers import import_directory

    kind = _kind(energy_kind)
    _finish(
        lambda: import_directory(directory, energies, id_column, energy_column, kind, symprec, track=_track), out
    )


@data_app.command("stats")
def stats_cmd(dataset: Path = typer.Argument(..., help="A crystalgen dataset file.")) -> None:
    """Counts, elements, space groups and polymorph-group sizes of a dataset."""
    from crystalgen.data.dataset import DatasetFormatError, iter_records, read_metadata
    from crystalgen.data.stats import dataset_stats

    if not dataset.is_file():
        typer.secho(f"error: {dataset}: no such file", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    try:
        metadata = read_metadata(dataset)
        stats = dataset_stats(iter_records(dataset))
    except DatasetFormatError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None

    summary = Table(title=f"{dataset.name}", show_header=False)
    summary.add_row("source", str(metadata.get("source", "?")))
    summary.add_row("structures", str(stats.n_structures))
    summary.add_row("formulas (polymorph groups)", str(stats.n_formulas))
    summary.add_row("sites per structure", f"{stats.nsites_min}..{stats.nsites_max}")
    summary.add_row("failed rows (not in the file)", str(metadata.get("counts", {}).get("failed", "?")))
    if stats.energy.get("count"):
        e = stats.energy
        summary.add_row("energy (eV/atom)", f"{e['min']:.3f}..{e['max']:.3f}, mean {e['mean']:.3f} ± {e['std']:.3f}")
    summary.add_row(
        f"elements ({len(stats.elements)}; structures containing)",
        " ".join(f"{el}:{n}" for el, n in stats.elements.most_common()),
    )
    console.print(summary)
    console.print(_counter_table("space groups", "number", stats.spacegroups.most_common(15)))
    console.print(_counter_table("polymorph-group sizes", "size", sorted(stats.group_sizes.items()), "groups"))


def _counter_table(title: str, key: str, rows, count: str = "structures") -> Table:
    table = Table(title=title, min_width=len(title) + 4)
    table.add_column(key)
    table.add_column(count, justify="right")
    for k, v in rows:
        table.add_row(str(k), str(v))
    return table


# Commands that live in other modules attach themselves to ``data_app`` when imported.
from crystalgen.cli import data_build  # noqa: E402,F401
