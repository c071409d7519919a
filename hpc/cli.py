"""``crystalgen campaign submit | status``, ``candidates``, ``resubmit``, ``hpc init | launch``."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from crystalgen.cli.errors import fail

console = Console()
hpc_app = typer.Typer(help="Cluster set-up for FireWorks workers (GPU generation, CPU relaxation).",
                      no_args_is_help=True)


class Scheduler(str, Enum):
    slurm = "slurm"
    pbs = "pbs"


class Launcher(str, Enum):
    crystalgen_rlaunch = "crystalgen-rlaunch"
    rlaunch = "rlaunch"


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    cif = "cif"




def _require_campaign(name: str) -> None:
    """One clear error for a campaign name the database does not know (instead of an empty result)."""
    from crystalgen.db import DatabaseUnavailable
    from flows.campaign_store import known_campaigns
    from flows.candidates import database
    from flows.stages import CAMPAIGN_KEY

    try:
        db = database()
        known = known_campaigns(db)
        if name in known or db["fireworks"].count_documents({f"spec.{CAMPAIGN_KEY}": name}, limit=1):
            return
    except DatabaseUnavailable as exc:
        fail(str(exc))
    fail(f"no campaign {name!r} in this database" + (f"; campaigns: {', '.join(known)}" if known else
                                                     " (it holds no campaign yet)"))


def _launchpad():
    from crystalgen.db import DatabaseUnavailable, launchpad

    try:
        return launchpad()
    except DatabaseUnavailable as exc:
        fail(str(exc))


# --------------------------------------------------------------------------- campaign submit / status


def submit(
    campaign_file: Path = typer.Argument(..., help="campaign YAML file"),
    force: bool = typer.Option(False, "--force", help="archive the campaign's live workflow and submit again"),
) -> None:
    """Put the campaign on the LaunchPad as a FireWorks workflow (gpu: generate; cpu: relax, hull)."""
    from crystalgen.db import DatabaseUnavailable
    from hpc.submit import AlreadySubmitted, submit_campaign

    try:
        result = submit_campaign(campaign_file, force=force)
    except AlreadySubmitted as exc:
        console.print(f"[yellow]{exc}[/yellow]")
        return
    except DatabaseUnavailable as exc:
        fail(str(exc))
    except ValueError as exc:  # CampaignError and bad resources
        fail(f"{campaign_file}: {exc}")
    if result.archived:
        console.print(f"archived previous workflow(s) with root fw_id {', '.join(map(str, result.archived))}")
    console.print(f"submitted campaign [bold]{result.campaign}[/bold]: {result.n_fireworks} fireworks "
                  f"(more are added as stages fan out), root fw_id {', '.join(map(str, result.root_fw_ids))}")
    console.print("run workers with `qlaunch -c <config dir> rapidfire` (see `crystalgen hpc init`); "
                  f"follow with `crystalgen campaign status {result.campaign}`")


def status(
    name: str = typer.Argument(..., help="campaign name"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
    lost_after: float = typer.Option(4 * 3600, help="seconds without heartbeat after which a run counts as lost"),
    live_funnel: bool = typer.Option(False, "--funnel", help="compute the discovery funnel now from every candidate "
                                     "(default: the one the hull stage last recorded)"),
) -> None:
    """Fireworks per stage and state, candidates per stage, lost runs and the discovery funnel of a campaign."""
    from hpc.status import campaign_status, status_tables

    _require_campaign(name)
    lpad = _launchpad()
    result = campaign_status(lpad, name, lost_after_s=lost_after, live_funnel=live_funnel)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    if result.total_fireworks == 0:
        fail(f"no fireworks for campaign {name!r}; submit it with `crystalgen campaign submit FILE`")
    for table in status_tables(result):
        console.print(table)
    if result.funnel is None:
        console.print("discovery funnel: not recorded yet (the hull stage records it; --funnel computes it now)")
    if result.lost_fw_ids:
        console.print(f"[red]lost runs[/red] (no heartbeat for {lost_after:.0f} s): fw_id "
                      f"{', '.join(map(str, result.lost_fw_ids))}; `crystalgen resubmit {name}` reruns them")


# --------------------------------------------------------------------------- candidates


def candidates(
    name: str = typer.Argument(..., help="campaign name"),
    below_hull: bool = typer.Option(False, "--below-hull", help="only candidates below the convex hull"),
    max_ehull: float = typer.Option(None, "--max-ehull", help="only e_above_hull <= X (eV/atom)"),
    formula: str = typer.Option(None, "--formula", help="only this composition (any formula form)"),
    spg: int = typer.Option(None, "--spg", min=1, max=230, help="only this conditioning space group"),
    stage: str = typer.Option("hull", "--stage", help="candidates in this stage ('all': any stage); "
                              "default: ranked ones"),
    limit: int = typer.Option(0, "--limit", min=0, help="at most N (0: all)"),
    duplicates: bool = typer.Option(False, "--duplicates", help="also list candidates whose relaxed structure "
                                    "repeats a better-ranked one (column duplicate_of)"),
    novel: bool = typer.Option(None, "--novel/--known", help="only candidates that match no reference phase or "
                               "training structure (--novel), or only those that do (--known)"),
    generator: str = typer.Option(None, "--generator", help="only candidates of this generator"),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, json, csv or cif"),
    out: Path = typer.Option(None, "--out", help="output folder (cif) or file (json/csv); default stdout"),
) -> None:
    """Candidates of a campaign ranked by energy above the hull."""
    from flows.schemas import CandidateState
    from hpc import query

    _require_campaign(name)
    states = [s.value for s in CandidateState]
    if stage != "all" and stage not in states:
        fail(f"--stage {stage!r} is not one of all, {', '.join(states)}")
    if fmt is OutputFormat.cif and out is None:
        fail("--format cif needs --out DIR")
    if formula is not None:
        from pymatgen.core import Composition, Element

        try:
            symbols = [str(getattr(el, "symbol", el)) for el in Composition(formula).elements]
        except (ValueError, KeyError):
            symbols = []
        if not symbols or not all(Element.is_valid_symbol(s) for s in symbols):
            fail(f"--formula {formula!r} is not a chemical formula of known elements")
    try:
        docs = query.find_candidates(name, below_hull=below_hull, max_e_above_hull=max_ehull, formula=formula,
                                     spacegroup=spg, stage=None if stage == "all" else stage, limit=limit,
                                     duplicates=None if duplicates else False, novel=novel, generator=generator)
    except Exception as exc:  # database errors: one line, no traceback
        fail(f"query failed: {exc}")
    if fmt is OutputFormat.cif:
        paths = query.write_cifs(docs, out)
        console.print(f"wrote {len(paths)} CIF file(s) to {out}")
        return
    if fmt is OutputFormat.table:
        console.print(query.rich_table(docs, f"{name}: {len(docs)} candidate(s), lowest e_above_hull first"))
        return
    text = query.to_json(docs) if fmt is OutputFormat.json else query.to_csv(docs)
    if out is None:
        typer.echo(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out)
        console.print(f"wrote {len(docs)} candidate(s) to {out}")


# --------------------------------------------------------------------------- resubmit


def resubmit(
    name: str = typer.Argument(..., help="campaign name"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan, change nothing"),
    max_retries: int = typer.Option(3, "--max-retries", min=0, help="leave fireworks rerun this often alone"),
    lost_after: float = typer.Option(4 * 3600, help="seconds without heartbeat after which a run counts as lost"),
) -> None:
    """Rerun the campaign's failed and lost VASP fireworks with a fix for the error each one hit."""
    from rich.table import Table

    from hpc import resubmit as rs

    _require_campaign(name)
    lpad = _launchpad()
    plans = rs.plan(lpad, name, max_retries=max_retries, lost_after_s=lost_after)
    if not plans:
        console.print(f"campaign {name!r}: no failed or lost relax fireworks")
        return
    table = Table(title=f"{name}: {'plan (dry run)' if dry_run else 'resubmission'}")
    for column in ("fw_id", "state", "candidate", "error", "evidence", "fix", "retries"):
        table.add_column(column)
    for p in plans:
        fix = f"[yellow]left alone: {p.skipped}[/yellow]" if p.skipped else p.fix.describe()
        table.add_row(str(p.fw_id), p.state if p.state != "RUNNING" else "RUNNING (lost)", p.candidate_id or "",
                      p.diagnosis.error_class.value, p.diagnosis.evidence[:80], fix, str(p.retries))
    console.print(table)
    if dry_run:
        console.print("dry run: nothing changed")
        return
    rerun = rs.apply(lpad, name, plans, lost_after_s=lost_after)
    skipped = [p.fw_id for p in plans if p.skipped]
    console.print(f"rerun {len(rerun)} firework(s)" + (f"; {len(skipped)} past --max-retries left alone: "
                                                     f"{', '.join(map(str, skipped))}" if skipped else ""))


# --------------------------------------------------------------------------- hpc init


@hpc_app.command("init")
def init(
    scheduler: Scheduler = typer.Option(Scheduler.slurm, "--scheduler", help="slurm or pbs"),
    category: str = typer.Option("gpu", "--category", help="FireWorks category this worker pulls: the category a "
                                 "campaign's resources give the stages it should run (e.g. gpu, cpu, gpu-a100)"),
    gpus: int = typer.Option(None, "--gpus", min=0, help="GPUs per node to request; default 1 for a category whose "
                             "name starts with 'gpu', else 0"),
    cpus: int = typer.Option(16, "--cpus", min=1, help="CPU cores per run (per node of a run)"),
    nodes: int = typer.Option(1, "--nodes", min=1, help="nodes per run (for VASP workers: the campaign's "
                              "resources.relax.nodes)"),
    runs_per_job: int = typer.Option(1, "--runs-per-job", min=1, help="fireworks one job runs side by side "
                                     "(rlaunch multi K); the job asks for K runs' nodes"),
    runs_per_node: int = typer.Option(1, "--runs-per-node", min=1, help="runs sharing one node (with --nodes 1): "
                                      "the job asks for runs-per-job / runs-per-node nodes"),
    max_queued: int = typer.Option(10, "--max-queued", min=1, help="most jobs of this directory in the queue at "
                                   "once (crystalgen hpc launch)"),
    walltime: str = typer.Option("24:00:00", "--walltime", help="HH:MM:SS or D-HH:MM:SS"),
    queue: str = typer.Option(None, "--queue", help="partition / queue"),
    account: str = typer.Option(None, "--account", help="allocation account / project"),
    mem: str = typer.Option(None, "--mem", help="memory per node, e.g. 64G"),
    module: list[str] = typer.Option([], "--module", help="module to load (repeatable)"),
    venv: Path = typer.Option(None, "--venv", help="virtual environment to activate in the job"),
    env: list[str] = typer.Option([], "--env", help="KEY=VALUE exported in the job (repeatable), e.g. "
                                  "MATGL_BACKEND=DGL for M3GNet pre-relaxation workers"),
    launcher: Launcher = typer.Option(Launcher.crystalgen_rlaunch, "--launcher",
                                      help="crystalgen-rlaunch (any server) or plain rlaunch (real mongod only)"),
    out: Path = typer.Option(..., "--out", help="configuration directory to write"),
) -> None:
    """Write my_launchpad.yaml, my_fworker.yaml, my_qadapter.yaml and the submit template for qlaunch."""
    from crystalgen.db import DatabaseUnavailable, mongo_uri
    from crystalgen.settings import get_settings
    from hpc.packing import packing_advice
    from hpc.templates import ClusterOptions, TemplateError, render_cluster_files

    if bad := [item for item in env if "=" not in item]:
        fail(f"--env {bad[0]!r}: use KEY=VALUE")
    if gpus is None:
        gpus = 1 if category.startswith("gpu") else 0
    options = ClusterOptions(scheduler=scheduler.value, category=category, gpus=gpus, cpus=cpus, nodes=nodes,
                             walltime=walltime, queue=queue, account=account, mem=mem, modules=list(module),
                             venv=str(venv) if venv else None, env=dict(item.split("=", 1) for item in env),
                             launcher=launcher.value, runs_per_job=runs_per_job, runs_per_node=runs_per_node,
                             max_queued=max_queued)
    settings = get_settings()
    try:
        options.validate()
        uri = mongo_uri(settings, start=False)
        paths = render_cluster_files(options, settings, uri, out)
    except TemplateError as exc:
        fail(str(exc))
    except DatabaseUnavailable as exc:
        fail(f"{exc}\nhpc init writes the database URI into the launchpad file: configure mongodb_uri "
              "(a server the compute nodes can reach) or start the embedded one first")
    for kind, path in paths.items():
        console.print(f"{kind:>9}: {path}")
    if "127.0.0.1" in uri or "localhost" in uri:
        console.print("[yellow]the database URI is local to this machine; compute nodes elsewhere cannot reach it "
                      "- set mongodb_uri to a shared MongoDB for real clusters[/yellow]")
    if options.runs_per_job > 1:
        advice, warning = packing_advice(options, settings)
        typer.echo(f"packing: {advice}")
        if warning:
            typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    directory = paths["qadapter"].parent
    typer.echo(f"submit workers with: crystalgen hpc launch {directory} (at most {max_queued} queued; cron), "
               f"or qlaunch -c {directory} rapidfire")


@hpc_app.command("launch")
def launch(
    config_dir: Path = typer.Argument(..., help="worker configuration directory (crystalgen hpc init --out)"),
    reserve: bool = typer.Option(False, "--reserve", help="reservation mode: one job per READY firework, sized by "
                                 "its _queueadapter (my_qadapter_reserve.yaml)"),
    launch_dir: Path = typer.Option(Path("."), "--launch-dir", help="where the block_*/launcher_* folders go"),
    timeout: float = typer.Option(30, "--timeout", min=1, help="seconds to wait for each scheduler command"),
) -> None:
    """Submit jobs for READY fireworks of this directory's category while fewer than --max-queued are queued."""
    from hpc.launch import LaunchError, launch as launch_jobs
    from hpc.scheduler_check import SchedulerCheckError

    try:
        report = launch_jobs(config_dir, reserve=reserve, launch_dir=launch_dir, timeout=timeout)
    except (LaunchError, SchedulerCheckError) as exc:
        fail(str(exc))
    typer.echo(report.summary())


# --------------------------------------------------------------------------- registration


def _campaign_app(app: typer.Typer) -> typer.Typer:
    """The ``campaign`` sub-app the flows layer registered (created here if it is missing)."""
    for group in app.registered_groups:
        if group.name == "campaign" and group.typer_instance is not None:
            return group.typer_instance
    campaign_app = typer.Typer(help="Run and submit discovery campaigns.", no_args_is_help=True)
    app.add_typer(campaign_app, name="campaign")
    return campaign_app


def register(app: typer.Typer) -> None:
    """Attach the cluster commands to the root app (called through the crystalgen.cli entry point)."""
    campaign_app = _campaign_app(app)
    campaign_app.command("submit")(submit)
    campaign_app.command("status")(status)
    app.command("candidates")(candidates)
    app.command("resubmit")(resubmit)
    from hpc.scheduler_check import check_command

    hpc_app.command("check")(check_command)
    app.add_typer(hpc_app, name="hpc")
