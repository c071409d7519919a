"""``crystalgen campaign validate | plan | run``: check, preview and run a discovery campaign."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crystalgen.cli.errors import fail
from flows.campaign import Campaign, CampaignError, load_campaign

campaign_app = typer.Typer(help="Validate, plan and run discovery campaigns (campaign YAML files).", no_args_is_help=True)
console = Console()


def register(app: typer.Typer) -> None:
    """Attach the campaign commands to the root app (called through the crystalgen.cli entry point)."""
    app.add_typer(campaign_app, name="campaign")




def _load(path: Path) -> Campaign:
    """Validate everything that can be checked without the database: schema, checkpoint, references."""
    from flows.references import ReferenceError, campaign_elements, file_elements, reference_file

    try:
        campaign = load_campaign(path)
        if campaign.references.source == "file":
            ref_path = reference_file(campaign)
            if missing := sorted(campaign_elements(campaign) - file_elements(ref_path)):
                raise CampaignError(f"references.file: {ref_path.name} has no phases with {', '.join(missing)}")
    except (CampaignError, ReferenceError) as exc:
        fail(f"{path}: {exc}")
    return campaign


@campaign_app.command()
def validate(file: Path = typer.Argument(..., help="campaign YAML file")) -> None:
    """Check a campaign file; exit 1 with a message naming the bad field and value."""
    campaign = _load(file)
    console.print(f"[green]{file}: campaign {campaign.name!r} is valid[/green]")


def plan_rows(campaign: Campaign) -> list[tuple[str, str, str, str]]:
    """(stage, jobs, resources per job, requested hours) for the dry run."""
    from flows.conditions import expand_conditions

    points = expand_conditions(campaign, lambda _formula: 0.0)  # hull offsets only change values, not the count
    n_candidates = len(points) * campaign.samples_per_condition
    n_chunks = math.ceil(n_candidates / campaign.prerelax.chunk_size)
    res = campaign.resources
    relax_jobs = n_candidates if campaign.prerelax.max_selected is None else min(n_candidates, campaign.prerelax.max_selected)

    def cost(r, jobs: int) -> str:
        unit = "GPU-h" if r.category == "gpu" else "node-h"
        amount = r.hours * jobs * (max(r.gpus, 1) if r.category == "gpu" else r.nodes)
        return f"<= {amount:,.1f} {unit}"

    def ask(r) -> str:
        return f"{r.category}, {r.walltime}, {r.nodes} node(s)" + (f", {r.gpus} GPU(s)" if r.gpus else "")

    relax_label = "relax (VASP, atomate2)" if campaign.relax.engine == "vasp" else "relax (MLIP stand-in, not DFT)"
    return [
        ("generate", "1", ask(res.generate), cost(res.generate, 1)),
        ("prerelax", f"{n_chunks} (x {campaign.prerelax.chunk_size} candidates)", ask(res.prerelax), cost(res.prerelax, n_chunks)),
        ("select", "1", ask(res.hull), cost(res.hull, 1)),
        (relax_label, f"<= {relax_jobs} (those within {campaign.prerelax.e_above_hull_window} eV/atom MLIP e_hull)",
         ask(res.relax), cost(res.relax, relax_jobs if campaign.relax.engine == "vasp" else 1)),
        ("hull", "1", ask(res.hull), cost(res.hull, 1)),
    ]


@campaign_app.command()
def plan(file: Path = typer.Argument(..., help="campaign YAML file")) -> None:
    """Dry run: conditions, candidates, jobs per stage and requested compute. Touches no database."""
    from flows.conditions import expand_conditions, grid_size

    campaign = _load(file)
    points = expand_conditions(campaign, lambda _formula: 0.0)
    grid = Table(title=f"campaign {campaign.name}: energy schemes (eV/atom, relative to start)")
    for column in ("scheme", "start", "first", "last", "step", "count"):
        grid.add_column(column)
    for scheme in campaign.energy_grid:
        values = scheme.values(0.0)
        grid.add_row(scheme.label, str(scheme.start), f"{values[0]:+.3f}", f"{values[-1]:+.3f}", f"{scheme.step:g}", str(scheme.count))
    console.print(grid)
    n_candidates = len(points) * campaign.samples_per_condition
    console.print(
        f"{len(campaign.compositions)} compositions ({', '.join(campaign.compositions)}) x {len(campaign.spacegroups)} "
        f"space groups x {sum(s.count for s in campaign.energy_grid)} energies ({len(campaign.energy_grid)} schemes) "
        f"= {grid_size(campaign)} grid points, {len(points)} distinct conditions "
        f"x {campaign.samples_per_condition} samples = {n_candidates} candidates"
    )
    stages = Table(title="jobs per stage (upper bounds; requested resources, not measured cost)")
    for column in ("stage", "jobs", "per job", "requested"):
        stages.add_column(column)
    for row in plan_rows(campaign):
        stages.add_row(*row)
    console.print(stages)
    console.print(f"relax engine: {campaign.relax.engine}; INCAR {campaign.relax.incar_settings}; "
                  f"references: {campaign.references.source} {campaign.references.file or ''}".rstrip())


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

    from crystalgen.potentials import PotentialSanityError
    from flows.energies import load_mlip

    try:  # before anything is written: the jobs would fail on it one by one
        load_mlip(campaign.prerelax.potential)
    except (ValueError, FileNotFoundError, PotentialSanityError) as exc:
        fail(f"{file}: prerelax.potential: {exc}")

    from jobflow import run_locally

    from crystalgen.db import DatabaseUnavailable, job_store, mongo_client
    from flows import candidates as cands
    from flows.makers import CampaignMaker
    from flows.report import build_report, rich_table

    if campaign.relax.engine == "mlip":
        console.print("[yellow]relax engine: MLIP stand-in (no VASP here): results are labelled engine=mlip, is_dft=false[/yellow]")
    try:
        store = job_store()
        coll = cands.collection()
    except DatabaseUnavailable as exc:
        fail(str(exc))
    flow = CampaignMaker().make(campaign)
    run_locally(flow, store=store, log="%(asctime)s %(message)s")
    settings = get_settings()
    out_dir = results / campaign.name
    report = build_report(campaign, coll, mongo_client(settings)[settings.database], out_dir, limit=top)
    console.print(rich_table(report))
    for reason, n in report["failures"]:
        console.print(f"[yellow]{n} failed: {reason}[/yellow]")
    if not report["ranked"]:
        console.print("[yellow]no candidate reached the hull stage (see the failure reasons above)[/yellow]")
    console.print(f"report: {out_dir / 'report.md'} (+ report.json, {len(report['plots'])} hull plot(s))")
    unfinished = {stage: n for stage, n in report["counts"].items() if stage not in cands.TERMINAL and n}
    if unfinished:
        fail(f"campaign {campaign.name} did not finish, candidates still at {unfinished}; rerun to resume")
