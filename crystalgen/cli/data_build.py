"""``crystalgen data build-prototypes``: the offline polymorph dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from crystalgen.cli.data import data_app
from crystalgen.layout import MAX_SITES

DEFAULT_WORK_DIR = Path(".crystalgen/work")


def _run_chunked(command: str, build):
    """Run ``build(on_chunk)`` under a chunk progress bar; known failures: one message, exit 1."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from crystalgen.potentials import PotentialSanityError

    console = Console(stderr=True)
    with Progress(TextColumn("[bold]relaxing chunks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("chunks", total=None)
        try:
            stats = build(lambda done, total: bar.update(task, completed=done, total=total))
        except (PotentialSanityError, ValueError, RuntimeError) as exc:
            typer.secho(f"{command} failed: {exc}", err=True, fg="red")
            raise typer.Exit(1) from None
    return stats, console


@data_app.command("build-prototypes")
def build_prototypes(
    output: Path = typer.Argument(..., help="dataset file to write (.jsonl or .jsonl.gz)"),
    system: list[str] = typer.Option(
        None,
        "--system",
        "-s",
        help="chemical system, e.g. Ta-W-B or Ta-W-B:8 (':N' = prototypes up to N primitive sites); repeatable. "
        "Default: the built-in list of 56 boride/carbide/nitride/silicide/aluminide systems.",
    ),
    max_sites: int = typer.Option(4, min=1, max=MAX_SITES, help="largest primitive cell (sites) of a prototype"),
    potential: str = typer.Option(None, help="potential name or matgl model folder (default: the potential setting, else embedded TensorNet)"),
    fmax: float = typer.Option(0.1, min=1e-4, help="force convergence, eV/Å"),
    max_steps: int = typer.Option(100, min=1, help="FIRE steps per structure"),
    workers: int = typer.Option(2, min=0, help="dask worker processes (0 = relax in this process)"),
    chunk_size: int = typer.Option(64, min=1, help="structures per resumable work unit"),
    work_dir: Path = typer.Option(
        DEFAULT_WORK_DIR, help="finished chunks live here; a rerun resumes, a build with more systems reuses them"
    ),
    partial: bool = typer.Option(False, "--partial", help="only assemble the chunks finished so far"),
) -> None:
    """Decorate AFLOW prototypes, relax them with an MLIP and write a polymorph dataset."""
    from pydantic import ValidationError

    from crystalgen.prototypes import DEFAULT_SYSTEMS, BuildConfig, build_prototype_dataset

    if output.suffix not in {".jsonl", ".gz"}:
        typer.secho(f"output {output}: use a .jsonl or .jsonl.gz file name", err=True, fg="red")
        raise typer.Exit(1)
    try:
        config = BuildConfig(
            systems=list(system) if system else list(DEFAULT_SYSTEMS),
            max_sites=max_sites,
            potential=potential,
            fmax=fmax,
            max_steps=max_steps,
            chunk_size=chunk_size,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        option = {"systems": "system"}.get(str(error["loc"][0]), str(error["loc"][0])).replace("_", "-")
        typer.secho(f"invalid --{option}: {error['msg']}", err=True, fg="red")
        raise typer.Exit(1) from None

    stats, console = _run_chunked("build-prototypes", lambda on_chunk: build_prototype_dataset(
        config, output, work_dir, workers=workers, partial=partial, on_chunk=on_chunk))
    console.print(
        f"wrote {stats['records']} structures ({stats['formulas']} formulas) to {output}; "
        f"relaxed {stats['candidates_relaxed']}/{stats['candidates_total']} candidates "
        f"({stats['candidates_reused']} reused from earlier runs), converged {stats['converged']}, "
        f"failed {stats['failed']}, duplicates merged {stats['duplicates_merged']}"
    )


@data_app.command("build-orderings")
def build_orderings(
    output: Path = typer.Argument(..., help="dataset file to write (.jsonl or .jsonl.gz): the base plus the orderings"),
    base: Path = typer.Option(
        Path("aflow_prototypes_tensornet.jsonl.gz"),
        help="dataset to extend (its elemental references give the formation energies; same potential required); "
        "a bare name is looked up in crystalgen/assets/datasets",
    ),
    metals: str = typer.Option("Ta-W", help="the two metals ordered on the metal sites, e.g. Ta-W"),
    max_sites: int = typer.Option(14, min=1, max=MAX_SITES, help="largest supercell (sites) of a structure type"),
    type_: list[str] = typer.Option(None, "--type", help="boride structure type (repeatable); default: all of crystalgen.orderings.BORIDE_TYPES"),
    potential: str = typer.Option(None, help="potential name or matgl model folder (default: the potential setting, else embedded TensorNet)"),
    fmax: float = typer.Option(0.1, min=1e-4, help="force convergence, eV/Å (the base's, for consistent energies)"),
    max_steps: int = typer.Option(100, min=1, help="FIRE steps per structure"),
    workers: int = typer.Option(2, min=0, help="dask worker processes (0 = relax in this process)"),
    chunk_size: int = typer.Option(32, min=1, help="structures per resumable work unit"),
    work_dir: Path = typer.Option(DEFAULT_WORK_DIR, help="finished chunks live here; a rerun resumes"),
    partial: bool = typer.Option(False, "--partial", help="only assemble the chunks finished so far"),
) -> None:
    """Order two metals on the metal sites of boride structure types, relax, and add them to a dataset."""
    from pydantic import ValidationError

    from crystalgen.config import ConfigError, resolve_dataset
    from crystalgen.orderings import BORIDE_TYPES, build_ordering_dataset
    from crystalgen.prototypes import BuildConfig, parse_system

    def bad(option: str, message: str):
        typer.secho(f"invalid --{option}: {message}", err=True, fg="red")
        raise typer.Exit(1)

    if output.suffix not in {".jsonl", ".gz"}:
        bad("output", f"{output}: use a .jsonl or .jsonl.gz file name")
    try:
        pair, _ = parse_system(metals)
    except ValueError as exc:
        bad("metals", str(exc))
    if len(pair) != 2 or "B" in pair:
        bad("metals", f"{metals!r}: give two metals, e.g. Ta-W")
    known = [name for name, *_ in BORIDE_TYPES]
    unknown = [t for t in type_ or [] if t not in known]
    if unknown:
        bad("type", f"{', '.join(unknown)} (known: {', '.join(known)})")
    try:
        base_path = resolve_dataset(base)
    except ConfigError as exc:
        bad("base", str(exc))
    try:
        config = BuildConfig(systems=[f"{pair[0]}-{pair[1]}-B"], potential=potential, fmax=fmax, max_steps=max_steps,
                             chunk_size=chunk_size)
    except ValidationError as exc:
        error = exc.errors()[0]
        bad(str(error["loc"][0]).replace("_", "-"), error["msg"])

    stats, console = _run_chunked("build-orderings", lambda on_chunk: build_ordering_dataset(
        base_path, output, work_dir, config, metals=pair, max_sites=max_sites, types=tuple(type_) if type_ else None,
        workers=workers, partial=partial, on_chunk=on_chunk))
    console.print(
        f"wrote {stats['base_records'] + stats['orderings_kept']} structures to {output}: {stats['base_records']} from "
        f"{base_path.name} + {stats['orderings_kept']} orderings ({stats['orderings_already_in_base']} already in the base, "
        f"{stats['duplicates_merged']} merged, {stats['failed']} failed of {stats['candidates_relaxed']}/"
        f"{stats['candidates_total']} relaxed)"
    )
