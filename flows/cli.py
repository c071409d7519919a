"""``crystalgen campaign validate | plan | run``: check, preview and run a discovery campaign."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crystalgen.cli.errors import fail
from flows.campaign import Campaign, CampaignError, load_campaign
from flows.schemas import TERMINAL_STATES, CandidateState

campaign_app = typer.Typer(help="Validate, plan and run discovery campaigns (campaign YAML files).", no_args_is_help=True)
console = Console()


def register(app: typer.Typer) -> None:
    """Attach the campaign commands to the root app (called through the crystalgen.cli entry point)."""
    app.add_typer(campaign_app, name="campaign")




def _load(path: Path) -> Campaign:
    """Validate everything that can be checked without the database or running a model (``flows.preflight``)."""
    from flows.preflight import preflight

    try:
        campaign = load_campaign(path)
        preflight(campaign)
    except CampaignError as exc:
        fail(f"{path}: {exc}")
    return campaign


@campaign_app.command()
def validate(file: Path = typer.Argument(..., help="campaign YAML file")) -> None:
    """Check a campaign file; exit 1 with a message naming the bad field and value."""
    campaign = _load(file)
    console.print(f"[green]{file}: campaign {campaign.name!r} is valid[/green]")


def plan_rows(campaign: Campaign, grid) -> list[tuple[str, str, str, str]]:
    """(stage, jobs, resources per job, requested hours) for the dry run."""
    from flows.conditions import count_conditions
    from flows.stages import Stage

    n_candidates = count_conditions(grid) * campaign.samples_per_condition * len(campaign.generator)
    n_chunks = math.ceil(n_candidates / campaign.prerelax.chunk_size)
    relax_jobs = n_candidates if campaign.prerelax.max_selected is None else min(n_candidates, campaign.prerelax.max_selected)
    vasp = campaign.relax.engine == "vasp"
    jobs = {
        Stage.REFERENCES: ("1", 1),
        Stage.GENERATE: ("1", 1),
        Stage.PRERELAX: (f"{n_chunks} (x {campaign.prerelax.chunk_size} candidates) + 1 fan-out", n_chunks),
        Stage.SELECT: ("1", 1),
        Stage.RELAX: (f"<= {relax_jobs} (those within {campaign.prerelax.e_above_hull_window} eV/atom MLIP e_hull)"
                      + (" + reference phases" if campaign.references.recompute else "") if vasp else "1",
                      relax_jobs if vasp else 1),
        Stage.HULL: ("1", 1),
    }
    rows = []
    for stage, (count, n) in jobs.items():
        r = campaign.resources.of(stage)
        unit = "GPU-h" if r.gpus else "node-h"
        amount = r.hours * n * (r.gpus or r.nodes)
        ask = f"{r.category}, priority {r.priority}, {r.walltime}, {r.nodes} node(s)" + (f", {r.gpus} GPU(s)" if r.gpus else "")
        label = stage.value if stage is not Stage.RELAX else ("relax (VASP, atomate2)" if vasp else "relax (MLIP stand-in, not DFT)")
        rows.append((label, count, ask, f"<= {amount:,.1f} {unit}"))
    return rows


@campaign_app.command()
def plan(file: Path = typer.Argument(..., help="campaign YAML file")) -> None:
    """Dry run: conditions, candidates, jobs per stage and requested compute. Touches no database."""
    from flows.conditions import count_conditions, grid_size

    campaign = _load(file)
    grid = campaign.grid
    table = Table(title=f"campaign {campaign.name}: energy schemes (eV/atom, relative to start)")
    for column in ("scheme", "start", "first", "last", "step", "count"):
        table.add_column(column)
    for scheme in campaign.energy_grid:
        values = scheme.values(0.0)
        table.add_row(scheme.label, str(scheme.start), f"{values[0]:+.3f}", f"{values[-1]:+.3f}", f"{scheme.step:g}",
                      str(scheme.count))
    console.print(table)
    n_conditions = count_conditions(grid)
    skipped = f" ({len(grid.excluded)} composition/space-group pairs left out: incompatible_spacegroups: skip)" \
        if grid.excluded else ""
    console.print(
        f"{len(campaign.compositions)} compositions ({', '.join(campaign.compositions)}) x {len(campaign.spacegroups)} "
        f"space groups{skipped} x {sum(s.count for s in campaign.energy_grid)} energies ({len(campaign.energy_grid)} "
        f"schemes) = {grid_size(grid):,} grid points, {n_conditions:,} distinct conditions "
        f"x {campaign.samples_per_condition} samples x {len(campaign.generator)} generator(s) "
        f"({', '.join(campaign.generator)}) = "
        f"{n_conditions * campaign.samples_per_condition * len(campaign.generator):,} candidates"
    )
    stages = Table(title="jobs per stage (upper bounds; requested resources, not measured cost)")
    for column in ("stage", "jobs", "per job", "requested"):
        stages.add_column(column)
    for row in plan_rows(campaign, grid):
        stages.add_row(*row)
    console.print(stages)
    console.print(f"relax engine: {campaign.relax.engine}; INCAR {campaign.relax.incar_settings}; "
                  f"references: {campaign.references.source} {campaign.references.file or ''}".rstrip())


def _load_potentials(file: Path, campaign: Campaign):
    """Load and check the potentials before anything is written (the jobs would fail on them one by one)."""
    from crystalgen.potentials import PotentialSanityError
    from flows.campaign_store import potential_record
    from flows.makers import mlip_settings

    prerelax_mlip, relax_mlip = mlip_settings(campaign)
    records = {}
    for field, mlip, needed in (("prerelax.potential", prerelax_mlip, True),
                                ("relax.potential", relax_mlip, campaign.relax.engine == "mlip")):
        try:
            records[field] = potential_record(mlip, loaded=True) if needed else None
        except (ValueError, FileNotFoundError, PotentialSanityError) as exc:
            fail(f"{file}: {field}: {exc}")
    return records["prerelax.potential"], records["relax.potential"]


@campaign_app.command()
def run(
    file: Path = typer.Argument(..., help="campaign YAML file"),
    results: Path = typer.Option(Path("results"), help="report folder; the report goes to RESULTS/<campaign name>"),
    top: int = typer.Option(15, help="rows in the ranking"),
) -> None:
    """Run the campaign here (jobflow run_locally) and write the report; reruns resume and add no duplicates."""
    from crystalgen.settings import get_settings

    campaign = _load(file)
    if campaign.relax.engine == "vasp" and not get_settings().vasp_cmd:
        fail(f"{file}: relax.engine is vasp, but no VASP command is configured on this machine (setting vasp_cmd, "
             "env CRYSTALGEN_VASP_CMD). Submit it to a cluster through FireWorks, or use engine: mlip for a "
             "local MLIP stand-in.")
    prerelax_potential, relax_potential = _load_potentials(file, campaign)

    from crystalgen.db import DatabaseUnavailable, database_errors, job_store
    from flows import candidates as cands
    from flows.campaign_store import record_campaign
    from flows.local_run import run_flow, stage_summaries
    from flows.makers import CampaignMaker
    from flows.report import build_report, rich_table

    if campaign.relax.engine == "mlip":
        console.print("[yellow]relax engine: MLIP stand-in (no VASP here): results are labelled engine=mlip, is_dft=false[/yellow]")
    out_dir = results / campaign.name
    try:
        with database_errors():
            store = job_store()
            coll = cands.collection()
            record_campaign(cands.database(), campaign, prerelax_potential, relax_potential,
                            str(campaign.checkpoint_path()))
            failures = run_flow(CampaignMaker().make(campaign), store, out_dir / "run.log")
            report = build_report(campaign, coll, cands.database(), out_dir, limit=top)
    except DatabaseUnavailable as exc:
        fail(str(exc))
    except CampaignError as exc:
        fail(f"{file}: {exc}")
    console.print(rich_table(report))
    for reason, n in report["failures"]:
        console.print(f"[yellow]{n} failed: {reason}[/yellow]")
    if not report["ranked"]:
        console.print("[yellow]no candidate reached the hull stage (see the failure reasons above)[/yellow]")
    console.print(f"report: {out_dir / 'report.md'} (+ report.json, {len(report['plots'])} hull plot(s)); log: {out_dir / 'run.log'}")
    if failures:
        fail("\n".join([f"campaign {campaign.name}: {len(failures)} job(s) failed; results so far are kept and a "
                         f"rerun resumes (details: {out_dir / 'run.log'})", *stage_summaries(failures)]))
    unfinished = {stage: n for stage, n in report["counts"].items() if CandidateState(stage) not in TERMINAL_STATES and n}
    if unfinished:
        fail(f"campaign {campaign.name} did not finish, candidates still at {unfinished}; rerun to resume")
