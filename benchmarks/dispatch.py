"""FireWorks dispatch overhead per firework, and how it grows with the database and with launchers.

Each case adds ``--n`` trivial fireworks (a jobflow job, as campaigns submit: JobFiretask + MongoDB
JobStore, tagged and routed like a relax job; or a plain PyTask) and times ``rapidfire`` launchers
until all of them ran. The task does nothing, so the time per firework is what dispatch costs. Cases:

* ``--background``: fireworks already in the database (added with the real ``LaunchPad.add_wf``, in
  workflows of 100, category ``elsewhere``, marked COMPLETED: earlier stages of a campaign);
* ``--launchers``: launcher processes sharing the queue;
* with crystalgen's indexes (``crystalgen.db.indexes``) and SecantusDB workarounds (checkout query,
  ``crystalgen.db.fireworks_query``; find-and-modify from indexes, ``crystalgen.db.indexed_updates``),
  as ``crystalgen.db.launchpad()`` sets them up, and, as the baseline in the same run (one
  launcher), without them: indexes but ``_id`` dropped, FireWorks' own query and findAndModify.

Besides wall time per firework it reports the CPU seconds per firework spent in the launchers and,
on the embedded server, in the server process, which shows where the time goes; ``--profile`` adds
the top functions of one launcher (cProfile). ``--uri`` runs the same cases against any MongoDB
(mongod, Atlas) instead of a fresh embedded SecantusDB.

    python benchmarks/dispatch.py [--n 200] [--launchers 1 4] [--background 0 1000 4800]
                                  [--kinds jobflow] [--uri mongodb://...] [--profile]
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

KINDS = {"jobflow": "jobflow job", "plain": "FireWorks PyTask"}


def _quiet_launchpad():
    """The LaunchPad, without FireWorks' INFO line listing every added id (and jobflow's warning that
    parallel jobs are unconnected)."""
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


def _add_plain(lpad, n: int, category: str = "cpu") -> None:
    from fireworks import Firework, PyTask, Workflow

    fws = [Firework(PyTask(func="benchmarks.dispatch.noop"), name=f"noop-{i}", spec={"_category": category})
           for i in range(n)]
    lpad.add_wf(Workflow(fws, name="plain"))


def _add_jobflow(lpad, n: int, category: str = "cpu") -> None:
    from jobflow import Flow, job
    from jobflow.managers.fireworks import flow_to_workflow

    from crystalgen.db import job_store
    from flows.resources import StageResources
    from flows.stages import Stage, job_tag
    from hpc.routing import manager_config

    trivial = job(noop, name="relax")
    jobs = [trivial(i) for i in range(n)]
    config = manager_config(StageResources().of(Stage.RELAX)) | {"_category": category}
    for item in jobs:  # tagged and routed like a campaign's relax jobs
        item.metadata.update(job_tag(Stage.RELAX, "bench"))
        item.update_config({"manager_config": config}, dynamic=False)
    lpad.add_wf(flow_to_workflow(Flow(jobs), store=job_store()))


ADD = {"jobflow": _add_jobflow, "plain": _add_plain}


def add_background(lpad, n: int, kind: str) -> None:
    """``n`` COMPLETED fireworks of another category, in workflows of 100."""
    for start in range(0, n, 100):
        ADD[kind](lpad, min(100, n - start), category="elsewhere")
    lpad.fireworks.update_many({"spec._category": "elsewhere"}, {"$set": {"state": "COMPLETED"}})
    lpad.workflows.update_many({"state": "READY"}, {"$set": {"state": "COMPLETED"}})


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (Linux /proc), None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _launcher(uri: str, database: str, data_dir: str, workdir: str, profile: str | None, cpu, baseline: bool) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)  # jobflow logs every job at INFO; keep the table readable
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    _settings_env(uri, database, data_dir)
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire

    from crystalgen.db import launchpad

    os.chdir(workdir)
    lpad = launchpad()
    if baseline:  # FireWorks' own checkout query and find-and-modify calls
        from crystalgen.db.indexed_updates import FIND_AND_MODIFY_COLLECTIONS, IndexedFindAndModify

        FWorker.query = property(FWorker.query.fget.original)
        for name in FIND_AND_MODIFY_COLLECTIONS:
            if isinstance(wrapped := getattr(lpad, name), IndexedFindAndModify):
                setattr(lpad, name, wrapped._collection)
    start = time.process_time()
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    rapidfire(lpad, FWorker(name=f"bench-{os.getpid()}", category="cpu"), nlaunches=0, max_loops=1,
              sleep_time=1, strm_lvl="ERROR")
    if profile:
        profiler.disable()
        profiler.dump_stats(profile)
    cpu.put(time.process_time() - start)


def drop_indexes(lpad) -> None:
    for name in ("fireworks", "launches", "workflows"):
        getattr(lpad, name).drop_indexes()
    lpad.db["outputs"].drop_indexes()


def run_case(lpad, kind: str, n: int, launchers: int, uri: str, database: str, root: Path, server_pid: int | None,
             profile: str | None, baseline: bool) -> dict:
    data_dir = str(root / "data")
    in_db = lpad.fireworks.count_documents({})
    start = time.perf_counter()
    ADD[kind](lpad, n)
    added = time.perf_counter() - start

    ctx = mp.get_context("spawn")
    cpu = ctx.Queue()
    procs = []
    for i in range(launchers):
        workdir = root / f"{database}_{uuid.uuid4().hex[:6]}"
        workdir.mkdir(parents=True)
        procs.append(ctx.Process(target=_launcher, args=(uri, database, data_dir, str(workdir),
                                                         profile if i == 0 else None, cpu, baseline)))
    server_before = _cpu_seconds(server_pid) if server_pid else None
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    ran = time.perf_counter() - start
    server_after = _cpu_seconds(server_pid) if server_pid else None

    completed = lpad.fireworks.count_documents({"state": "COMPLETED", "spec._category": "cpu"})
    lpad.fireworks.update_many({"spec._category": "cpu"}, {"$set": {"spec._category": "done"}})  # next case's queue
    if completed != n or any(proc.exitcode for proc in procs):
        raise SystemExit(f"{kind} x{launchers}: only {completed}/{n} fireworks completed")
    launcher_cpu = sum(cpu.get() for _ in procs)
    server_cpu = None if server_before is None or server_after is None else server_after - server_before
    return {"kind": KINDS[kind], "launchers": launchers, "in_db": in_db + n, "add_ms": 1000 * added / n,
            "run_ms": 1000 * ran / n, "launcher_cpu_ms": 1000 * launcher_cpu / n,
            "server_cpu_ms": None if server_cpu is None else 1000 * server_cpu / n}


def print_profile(path: str, top: int = 18) -> None:
    import pstats

    print(f"\none launcher's profile (cProfile, cumulative), last case with --profile:")
    pstats.Stats(path).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="fireworks run per case")
    parser.add_argument("--launchers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--background", type=int, nargs="+", default=[0, 1000, 4800],
                        help="fireworks already in the database")
    parser.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=["jobflow"])
    parser.add_argument("--uri", default=None, help="any MongoDB URI instead of a fresh embedded server")
    parser.add_argument("--no-baseline", action="store_true", help="skip the runs without indexes")
    parser.add_argument("--profile", action="store_true", help="cProfile the first launcher of each case")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from crystalgen.db import server
    from crystalgen.db.indexes import ensure_fireworks_indexes, ensure_job_store_indexes

    rows = []
    with tempfile.TemporaryDirectory(prefix="crystalgen-bench-") as tmp:
        root = Path(tmp)
        state = None if args.uri else server.launch(root / "storage", log_path=root / "server.log")
        uri = args.uri or state.uri
        profile = str(root / "launcher.prof") if args.profile else None
        try:
            for kind in args.kinds:
                for background in sorted(args.background):
                    database = f"bench_{uuid.uuid4().hex[:8]}"
                    _settings_env(uri, database, str(root / "data"))
                    lpad = _quiet_launchpad()  # connected and imported before any clock starts
                    add_background(lpad, background, kind)
                    cases = [] if args.no_baseline else [(True, args.launchers[0])]
                    for baseline, k in cases + [(False, k) for k in args.launchers]:
                        if baseline:
                            drop_indexes(lpad)
                        else:
                            ensure_fireworks_indexes(lpad)
                            ensure_job_store_indexes(lpad.db["outputs"])
                        row = run_case(lpad, kind, args.n, k, uri, database, root, state.pid if state else None,
                                       profile, baseline)
                        rows.append(row | {"crystalgen": not baseline, "background": background})
                        print(rows[-1], flush=True)
                    lpad.connection.drop_database(database)
        finally:
            if state:
                server.terminate(state.pid)
        where = "embedded SecantusDB" if state else "MongoDB at --uri"
        table = Table(title=f"FireWorks dispatch per firework, {args.n} trivial fireworks per case, {where} "
                            f"({os.cpu_count()} CPU cores)")
        for column in ("task", "indexes + query", "fireworks in DB", "launchers", "add (ms/fw)", "run (ms/fw, wall)",
                       "launchers CPU (ms/fw)", "server CPU (ms/fw)", "throughput vs 1 launcher"):
            table.add_column(column, justify="left" if column == "task" else "right")
        def case(row):
            return row["kind"], row["crystalgen"], row["background"]

        first = {case(r): r["run_ms"] for r in rows if r["launchers"] == args.launchers[0]}
        for row in rows:
            ratio = f"{first[case(row)] / row['run_ms']:.2f}x" if case(row) in first else "-"
            table.add_row(row["kind"], "crystalgen" if row["crystalgen"] else "FireWorks' own", str(row["in_db"]),
                          str(row["launchers"]),
                          f"{row['add_ms']:.1f}", f"{row['run_ms']:.1f}", f"{row['launcher_cpu_ms']:.1f}",
                          "-" if row["server_cpu_ms"] is None else f"{row['server_cpu_ms']:.1f}", ratio)
        Console(width=160).print(table)
        if profile and Path(profile).exists():
            print_profile(profile)


if __name__ == "__main__":
    main()
