"""FireWorks dispatch overhead per firework on the embedded database (SecantusDB).

200 trivial fireworks go through the LaunchPad (add, checkout, run, complete) with 1 and with 2
launcher processes, for a plain FireWorks task and for a jobflow job (what campaigns submit:
JobFiretask + MongoDB JobStore). The task itself does nothing, so the time per firework is the
dispatch overhead a campaign pays per job. Ratios are against the 1-launcher run of the same kind,
measured in the same run.

    python benchmarks/dispatch.py [--n 200] [--launchers 1 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _quiet_launchpad():
    """The LaunchPad, without FireWorks' INFO line listing every added id (and jobflow's warning that
    200 parallel jobs are unconnected)."""
    import logging
    import warnings

    from crystalgen.db import launchpad

    warnings.filterwarnings("ignore", message="Some jobs are not connected")
    lpad = launchpad()
    lpad.m_logger.setLevel(logging.WARNING)
    return lpad


def _settings_env(uri: str, database: str, data_dir: str) -> None:
    os.environ.update(CRYSTALGEN_MONGODB_URI=uri, CRYSTALGEN_DATABASE=database, CRYSTALGEN_DATA_DIR=data_dir,
                      CRYSTALGEN_CONFIG=os.devnull, OMP_NUM_THREADS="1")
    from crystalgen.settings import get_settings

    get_settings.cache_clear()


def noop(*_args):
    """The trivial work of a firework."""
    return None


def _add_plain(lpad, n: int) -> None:
    from fireworks import Firework, PyTask, Workflow

    fws = [Firework(PyTask(func="benchmarks.dispatch.noop"), name=f"noop-{i}", spec={"_category": "cpu"})
           for i in range(n)]
    lpad.add_wf(Workflow(fws, name="plain"))


def _add_jobflow(lpad, n: int) -> None:
    from jobflow import Flow, job
    from jobflow.managers.fireworks import flow_to_workflow

    from crystalgen.db import job_store
    from flows.resources import StageResources
    from flows.stages import Stage, job_tag
    from hpc.routing import manager_config

    trivial = job(noop, name="relax")
    jobs = [trivial(i) for i in range(n)]
    for item in jobs:  # tagged and routed like a campaign's relax jobs
        item.metadata.update(job_tag(Stage.RELAX, "bench"))
        item.update_config({"manager_config": manager_config(StageResources().of(Stage.RELAX))}, dynamic=False)
    lpad.add_wf(flow_to_workflow(Flow(jobs), store=job_store()))


def _launcher(uri: str, database: str, data_dir: str, workdir: str) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)  # jobflow logs every job at INFO; keep the table readable
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    _settings_env(uri, database, data_dir)
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire

    from crystalgen.db import launchpad

    os.chdir(workdir)
    rapidfire(launchpad(), FWorker(name=f"bench-{os.getpid()}", category="cpu"), nlaunches=0, max_loops=1,
              sleep_time=1, strm_lvl="ERROR")


def run_case(kind: str, n: int, launchers: int, uri: str, root: Path) -> dict:
    database = f"bench_{uuid.uuid4().hex[:8]}"
    data_dir = str(root / "data")
    _settings_env(uri, database, data_dir)
    lpad = _quiet_launchpad()  # connected and imported before the clock starts
    start = time.perf_counter()
    (_add_plain if kind == "FireWorks PyTask" else _add_jobflow)(lpad, n)
    added = time.perf_counter() - start

    ctx = mp.get_context("spawn")
    procs = []
    for i in range(launchers):
        workdir = root / f"{database}_{i}"
        workdir.mkdir(parents=True)
        procs.append(ctx.Process(target=_launcher, args=(uri, database, data_dir, str(workdir))))
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    ran = time.perf_counter() - start

    completed = lpad.fireworks.count_documents({"state": "COMPLETED"})
    if completed != n or any(proc.exitcode for proc in procs):
        raise SystemExit(f"{kind} x{launchers}: only {completed}/{n} fireworks completed")
    return {"kind": kind, "launchers": launchers, "add_ms": 1000 * added / n, "run_ms": 1000 * ran / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--launchers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from crystalgen.db import server

    with tempfile.TemporaryDirectory(prefix="crystalgen-bench-") as tmp:
        root = Path(tmp)
        state = server.launch(root / "storage", log_path=root / "server.log")
        try:
            rows = [run_case(kind, args.n, k, state.uri, root)
                    for kind in ("FireWorks PyTask", "jobflow job") for k in args.launchers]
        finally:
            server.terminate(state.pid)

    table = Table(title=f"FireWorks dispatch overhead, {args.n} trivial fireworks, embedded SecantusDB "
                        f"({os.cpu_count()} CPU cores)")
    for column in ("task", "launchers", "add (ms/fw)", "run (ms/fw, wall)", "throughput vs 1 launcher"):
        table.add_column(column, justify="left" if column == "task" else "right")
    base = {row["kind"]: row["run_ms"] for row in rows if row["launchers"] == args.launchers[0]}
    for row in rows:
        table.add_row(row["kind"], str(row["launchers"]), f"{row['add_ms']:.1f}", f"{row['run_ms']:.1f}",
                      f"{base[row['kind']] / row['run_ms']:.2f}x")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
