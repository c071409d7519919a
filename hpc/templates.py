"""Render the FireWorks configuration directory a cluster needs: launchpad, fworker, qadapter.

The three files are the ones FireWorks itself reads with ``rlaunch -c DIR`` / ``qlaunch -c DIR``
(``my_launchpad.yaml``, ``my_fworker.yaml``, ``my_qadapter.yaml``). The qadapter is FireWorks'
``CommonAdapter`` with our submit-script template (``hpc/templates/<SCHEDULER>_template.txt``,
copied next to it) because the stock templates cannot request GPUs per node in one place and do
not export the ``torchrun`` launcher that multi-GPU generation uses inside one firework.

Packing (``runs_per_job`` K > 1): one allocation runs K fireworks side by side with FireWorks'
``rlaunch multi K`` (K forked rapidfire processes sharing one LaunchPad connection), sized as
K runs of ``nodes`` nodes each (or ``runs_per_node`` runs sharing a node). FireWorks does not
split the allocation among the runs: its ``--nodefile`` only fills a Python object (``FWData``)
that neither jobflow nor custodian reads, and it sets no environment. Each VASP run must take
its own share itself, e.g. ``srun --exclusive --nodes N ...`` on Slurm (``hpc.packing`` says
when the configured VASP command would not). ``crystalgen_launch.yaml`` keeps what
``crystalgen hpc launch`` needs (job name, cap on queued jobs, runs per job).

Secrets: ``my_launchpad.yaml`` holds the database URI with its password, so it, the qadapter
and ``crystalgen_env.sh`` (the job's copy of the URI, sourced by ``pre_rocket``) are created
owner-only (0600). Every value that goes into the job script is shell-quoted: a password, path or
command with quotes, ``$(...)`` or backticks stays data on the compute node.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import yaml

from crystalgen.db.private import write_private
from crystalgen.settings import Settings, config_file
from flows.resources import CATEGORY_PATTERN

SCHEDULERS = ("slurm", "pbs")
LAUNCHERS = ("crystalgen-rlaunch", "rlaunch")
WALLTIME_RE = re.compile(r"^(?:(\d+)-)?(\d{1,3}):([0-5]\d):([0-5]\d)$")
TIMEOUT_MARGIN = 0.9  # stop pulling new fireworks after 90% of the allocation's walltime
ENV_FILE = "crystalgen_env.sh"
LAUNCH_FILE = "crystalgen_launch.yaml"


class TemplateError(ValueError):
    """A cluster option is invalid; the message names it."""


def walltime_seconds(walltime: str) -> int:
    """'HH:MM:SS' or 'D-HH:MM:SS' (SLURM) in seconds."""
    match = WALLTIME_RE.match(walltime.strip())
    if not match:
        raise TemplateError(f"walltime {walltime!r} is not HH:MM:SS or D-HH:MM:SS")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


@dataclass
class ClusterOptions:
    """What ``crystalgen hpc init`` asks for; everything else is left to the site's defaults."""

    scheduler: str = "slurm"
    category: str = "gpu"
    gpus: int = 0
    cpus: int = 16
    nodes: int = 1
    walltime: str = "24:00:00"
    queue: str | None = None
    account: str | None = None
    mem: str | None = None
    modules: list[str] = field(default_factory=list)
    venv: str | None = None
    #: extra environment for the jobs, e.g. {"MATGL_BACKEND": "DGL"} for M3GNet pre-relaxation workers
    env: dict[str, str] = field(default_factory=dict)
    launcher: str = "crystalgen-rlaunch"
    worker_name: str | None = None
    #: fireworks one allocation runs side by side (rlaunch multi); ``nodes`` and ``cpus`` are per run
    runs_per_job: int = 1
    #: runs sharing one node (``nodes`` must then be 1); the allocation has runs_per_job / runs_per_node nodes
    runs_per_node: int = 1
    #: most jobs of this directory in the queue at once (``crystalgen hpc launch``)
    max_queued: int = 10

    @property
    def job_name(self) -> str:
        """The scheduler job name of every job of this worker kind: how ``hpc launch`` counts them."""
        return f"crystalgen-{self.category}"

    @property
    def allocation_nodes(self) -> int:
        return self.nodes * self.runs_per_job // self.runs_per_node

    def validate(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise TemplateError(f"scheduler {self.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
        if not re.match(CATEGORY_PATTERN, self.category):
            raise TemplateError(f"category {self.category!r} is not a FireWorks category name (letters, digits, _.:+-)")
        if self.launcher not in LAUNCHERS:
            raise TemplateError(f"launcher {self.launcher!r} is not one of {', '.join(LAUNCHERS)}")
        if self.gpus < 0:
            raise TemplateError(f"gpus must be >= 0, got {self.gpus}")
        for name in ("cpus", "nodes", "runs_per_job", "runs_per_node", "max_queued"):
            if getattr(self, name) < 1:
                raise TemplateError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.runs_per_node > 1 and self.nodes > 1:
            raise TemplateError(f"--runs-per-node {self.runs_per_node} shares nodes among runs, so --nodes (per run) "
                                f"must be 1, got {self.nodes}")
        if self.runs_per_job % self.runs_per_node:
            raise TemplateError(f"--runs-per-job {self.runs_per_job} is not a multiple of --runs-per-node "
                                f"{self.runs_per_node}: the allocation would hold a partly used node")
        walltime_seconds(self.walltime)
        for key in self.env:
            if not key.isidentifier():
                raise TemplateError(f"--env {key!r}: not a valid environment variable name")


def launchpad_config(settings: Settings, uri: str) -> dict:
    """``my_launchpad.yaml``: the settings' database, by URI (credentials stay in the URI)."""
    return {
        "host": uri,
        "name": settings.database,
        "uri_mode": True,
        "mongoclient_kwargs": {"retryWrites": False},
        "logdir": None,
        "strm_lvl": "INFO",
    }


def fworker_config(options: ClusterOptions) -> dict:
    """``my_fworker.yaml``: a worker that only pulls fireworks of its category."""
    return {
        "name": options.worker_name or f"crystalgen-{options.category}-{options.scheduler}",
        "category": options.category,
        "query": "{}",
        "env": {},
    }


def _quote(what: str, value: str | Path) -> str:
    """``value`` as one shell word. FireWorks drops every script line holding ``$$``, so those are refused."""
    if "$$" in str(value):
        raise TemplateError(f"{what} {str(value)!r} contains '$$', which FireWorks' script template cannot hold")
    return shlex.quote(str(value))


def job_env(uri: str) -> str:
    """``crystalgen_env.sh``: the database URI for the jobs, kept out of the (readable) job script."""
    return ("# crystalgen job environment, sourced by pre_rocket in my_qadapter.yaml: holds the database password\n"
            f"export CRYSTALGEN_MONGODB_URI={shlex.quote(uri)}\n")


def _pre_rocket(options: ClusterOptions, settings: Settings, config_dir: Path) -> str:
    """Environment for the jobs: modules, venv, and the same crystalgen settings as the submitter."""
    lines = [f"module load {_quote('--module', module)}" for module in options.modules]
    if options.venv:
        lines.append(f"source {_quote('--venv', Path(options.venv).expanduser() / 'bin' / 'activate')}")
    if config_file().is_file():  # the jobs read the same settings file as the submitting user
        lines.append(f"export CRYSTALGEN_CONFIG={_quote('settings file', config_file())}")
    lines.append(f"source {_quote('--out', config_dir / ENV_FILE)}")  # the launchpad file's URI, as it is there
    lines += [
        f"export CRYSTALGEN_DATABASE={_quote('database', settings.database)}",
        "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-${NCPUS:-1}}",
        "export HF_HUB_OFFLINE=1",
    ]
    lines += [f"export {key}={_quote(f'--env {key}', value)}" for key, value in options.env.items()]
    if settings.vasp_cmd:
        lines.append(f"export CRYSTALGEN_VASP_CMD={_quote('vasp_cmd', settings.vasp_cmd)}")
        lines.append(f"export ATOMATE2_VASP_CMD={_quote('vasp_cmd', settings.vasp_cmd)}")
    return "\n".join(lines)


def qadapter_config(options: ClusterOptions, settings: Settings, config_dir: Path, reserve: bool = False) -> dict:
    """``my_qadapter.yaml``: a CommonAdapter whose jobs pull fireworks until 90% of the walltime.

    One run per job: ``rapidfire``. ``runs_per_job`` K > 1: ``multi K``, K rapidfire processes in
    one allocation of K runs' size. ``reserve``: ``my_qadapter_reserve.yaml`` for ``qlaunch -r``
    (reservation mode), whose jobs run the one firework reserved for them (``singleshot``; qlaunch
    appends ``--fw_id N`` and refuses any other rocket_launch), sized for one run and overridden by
    that firework's ``_queueadapter``. ``crystalgen_job_name`` names every job of the directory
    (FireWorks renames ``job_name`` to the firework's name in reservation mode; it names the output
    files and Slurm's ``--comment``).
    """
    timeout = int(walltime_seconds(options.walltime) * TIMEOUT_MARGIN)
    directory = _quote("--out", config_dir)
    packed = options.runs_per_job > 1 and not reserve
    if reserve:
        rocket = f"{options.launcher} -c {directory} singleshot"
    elif packed:
        rocket = f"{options.launcher} -c {directory} multi {options.runs_per_job} --timeout {timeout}"
    else:
        rocket = f"{options.launcher} -c {directory} rapidfire --timeout {timeout}"
    config = {
        "_fw_name": "CommonAdapter",
        "_fw_q_type": options.scheduler.upper(),
        "_fw_template_file": str(config_dir / f"{options.scheduler.upper()}_template.txt"),
        "rocket_launch": rocket,
        "walltime": options.walltime,
        "queue": options.queue,
        "account": options.account,
        "job_name": options.job_name,
        "crystalgen_job_name": options.job_name,
        "pre_rocket": _pre_rocket(options, settings, config_dir),
        "post_rocket": None,
        "logdir": str(config_dir / "logs"),
    }
    gpus = options.gpus or None
    nodes = options.allocation_nodes if packed else options.nodes
    runs_per_node = options.runs_per_node if packed else 1
    if options.scheduler == "slurm":
        config.update(nodes=nodes, ntasks_per_node=runs_per_node, cpus_per_task=options.cpus, gpus=gpus,
                      mem=options.mem)
    else:
        chunk = f"{nodes}:ncpus={options.cpus * runs_per_node}"
        chunk += f":ngpus={gpus}" if gpus else ""
        chunk += f":mem={options.mem}" if options.mem else ""
        config.update(select=chunk, gpus=gpus)
    return config


def launch_config(options: ClusterOptions) -> dict:
    """``crystalgen_launch.yaml``: what ``crystalgen hpc launch`` reads besides the FireWorks files."""
    return {"category": options.category, "job_name": options.job_name, "max_queued": options.max_queued,
            "runs_per_job": options.runs_per_job}


def _dump(path: Path, header: str, data: dict) -> None:
    write_private(path, f"# {header}\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def render_cluster_files(options: ClusterOptions, settings: Settings, uri: str, out_dir: Path) -> dict[str, Path]:
    """Write the configuration directory; returns {file kind: path}. Validates before writing."""
    options.validate()
    out_dir = Path(out_dir).expanduser().resolve()
    qadapter = qadapter_config(options, settings, out_dir)  # refuses unquotable values before anything exists
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(exist_ok=True)
    template_name = f"{options.scheduler.upper()}_template.txt"
    paths = {
        "launchpad": out_dir / "my_launchpad.yaml",
        "fworker": out_dir / "my_fworker.yaml",
        "qadapter": out_dir / "my_qadapter.yaml",
        "qadapter_reserve": out_dir / "my_qadapter_reserve.yaml",
        "template": out_dir / template_name,
        "env": out_dir / ENV_FILE,
        "launch": out_dir / LAUNCH_FILE,
    }
    _dump(paths["launchpad"], "FireWorks LaunchPad: the crystalgen database (rlaunch/qlaunch/lpad -l this file)",
          launchpad_config(settings, uri))
    _dump(paths["fworker"], f"FireWorks FWorker: pulls only fireworks with spec._category == {options.category!r}",
          fworker_config(options))
    _dump(paths["qadapter"], f"FireWorks CommonAdapter ({options.scheduler.upper()}, {options.category}); "
          f"qlaunch -c {out_dir} rapidfire", qadapter)
    _dump(paths["qadapter_reserve"], f"FireWorks CommonAdapter ({options.scheduler.upper()}, {options.category}) for "
          f"reservation mode: qlaunch -c {out_dir} -q {paths['qadapter_reserve']} -r rapidfire",
          qadapter_config(options, settings, out_dir, reserve=True))
    write_private(paths["env"], job_env(uri))
    _dump(paths["launch"], f"crystalgen hpc launch {out_dir}: submits while fewer than max_queued jobs named "
          f"{options.job_name} are queued", launch_config(options))
    shutil.copyfile(files("hpc") / "templates" / template_name, paths["template"])
    return paths
