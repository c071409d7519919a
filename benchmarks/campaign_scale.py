"""The paper-size rehearsal: campaigns/tawb_paper.yaml through FireWorks workers, end to end, on this machine.

The campaign is submitted to a fresh database and run by one ``crystalgen-rlaunch`` worker per
category (gpu: references, generate, prerelax; cpu: select, relax, hull) until every firework is
COMPLETED. Everything is the real code (generation of every candidate with the shipped model,
chunking, selection, dedupe, one VASP relax firework per selected candidate and per reference phase,
hull, report) except:

* VASP: atomate2's fake-VASP utilities (``benchmarks/fake_vasp_worker.py``);
* BENCHMARK-ONLY: pre-relaxation is capped at ``--prerelax-steps`` FIRE steps (2 CPU cores), and
  ``--select-window`` may widen the selection window so that candidates still reach relax; the
  potential is the shipped TensorNet (the paper file names M3GNet, which needs the DGL environment),
  and the references come from the shipped Ta-W-B file instead of Materials Project (no network).

It prints per stage: fireworks, wall time, framework overhead per candidate (launch time outside
sampling, potential and VASP), the database size, and the latency of ``campaign status``,
``candidates --below-hull`` and ``resubmit --dry-run``; then it adds candidate documents through the
real writers up to ``--scale`` and measures the same queries again.

    python benchmarks/campaign_scale.py [--prerelax-steps 3] [--scale 100000] [--uri URI] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAPER = ROOT / "campaigns" / "tawb_paper.yaml"
CLI = [sys.executable, "-m", "crystalgen"]


def campaign_file(tmp: Path, prerelax_steps: int, smoke: bool, select_window: float | None = None) -> Path:
    import yaml

    data = yaml.safe_load(PAPER.read_text())
    data["references"] = {"source": "file", "recompute": True}  # the shipped Ta-W-B phases, relaxed by "VASP"
    data["prerelax"] = {**data["prerelax"], "potential": None, "steps": prerelax_steps}
    if select_window is not None:  # BENCHMARK-ONLY: capped pre-relaxation leaves energies far above the hull
        data["prerelax"]["e_above_hull_window"] = select_window
    if smoke:  # a few minutes: one composition, three groups, one energy scheme
        data.update(compositions=data["compositions"][:1], spacegroups=[187, 191, 12],
                    energy_grid=data["energy_grid"][:1])
        data["prerelax"]["chunk_size"] = 32
    path = tmp / "tawb_paper_rehearsal.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_workers(tmp: Path, env: dict) -> list[subprocess.Popen]:
    from crystalgen.db import mongo_uri
    from crystalgen.settings import get_settings
    from hpc.templates import ClusterOptions, render_cluster_files

    workers = []
    for category in ("gpu", "cpu"):
        paths = render_cluster_files(ClusterOptions(category=category, worker_name=f"rehearsal-{category}"),
                                     get_settings(), mongo_uri(), tmp / f"config_{category}")
        launch_dir = tmp / f"launches_{category}"
        launch_dir.mkdir()
        log = open(tmp / f"worker_{category}.log", "w")  # noqa: SIM115 - closed with the process
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "fake_vasp_worker.py"), str(tmp / "vasp"),
             "-l", str(paths["launchpad"]), "-w", str(paths["fworker"]), "rapidfire", "--nlaunches", "infinite",
             "--max_loops", "-1", "--sleep", "2"], cwd=launch_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        worker.log_path = log.name
        workers.append(worker)
    return workers


def wait_until_done(lpad, workers, poll_s: float = 10.0) -> None:
    while True:
        states = {row["_id"]: row["n"] for row in lpad.fireworks.aggregate(
            [{"$group": {"_id": "$state", "n": {"$sum": 1}}}])}
        active = sum(states.get(s, 0) for s in ("READY", "RESERVED", "RUNNING", "WAITING"))
        print(f"  {time.strftime('%H:%M:%S')} fireworks: {states}", flush=True)
        if not active:
            return
        if dead := [w for w in workers if w.poll() is not None]:
            logs = "\n".join(Path(w.log_path).read_text()[-3000:] for w in dead)
            raise RuntimeError(f"a worker exited (code {[w.returncode for w in dead]}) before the campaign finished:\n{logs}")
        time.sleep(poll_s)


def _time(value):
    """FireWorks stores launch times as datetimes or ISO strings, depending on the path that wrote them."""
    from datetime import datetime

    return datetime.fromisoformat(value) if isinstance(value, str) else value


def stage_table(lpad, db, name: str) -> list[dict]:
    from flows.costs import stage_costs
    from flows.stages import Stage

    costs = stage_costs(db, name)
    candidates = db.candidates.count_documents({"campaign": name})
    rows = []
    for stage in Stage:
        fws = list(lpad.fireworks.find({"spec.crystalgen_stage": stage.value}, {"launches": 1}))
        launch_ids = [fw["launches"][-1] for fw in fws if fw.get("launches")]
        launches = list(lpad.launches.find({"launch_id": {"$in": launch_ids}}, {"time_start": 1, "time_end": 1,
                                                                                 "runtime_secs": 1}))
        runtime = sum(la.get("runtime_secs") or 0.0 for la in launches)
        starts = [_time(la["time_start"]) for la in launches if la.get("time_start")]
        ends = [_time(la["time_end"]) for la in launches if la.get("time_end")]
        wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
        science = costs.get(stage.value, {}).get("science_s", 0.0)
        rows.append({"stage": stage.value, "fireworks": len(fws), "wall_s": wall, "runtime_s": runtime,
                     "science_s": science, "overhead_ms_per_candidate": 1000 * (runtime - science) / max(candidates, 1)})
    return rows


def query_latencies(lpad, name: str) -> dict[str, float]:
    """In-process time of the queries behind the three commands (the CLI adds Python's start-up)."""
    from hpc import resubmit
    from hpc.query import find_candidates
    from hpc.status import campaign_status

    out = {}
    for label, call in (("campaign status", lambda: campaign_status(lpad, name)),
                        ("candidates --below-hull", lambda: find_candidates(name, below_hull=True)),
                        ("resubmit --dry-run", lambda: resubmit.plan(lpad, name))):
        start = time.perf_counter()
        call()
        out[label] = time.perf_counter() - start
    for label, args in (("CLI campaign status", ["campaign", "status", name]),
                        ("CLI candidates --below-hull", ["candidates", name, "--below-hull", "--limit", "20"])):
        start = time.perf_counter()
        subprocess.run([*CLI, *args], capture_output=True, check=True, env=dict(os.environ))
        out[label] = time.perf_counter() - start
    return out


def add_documents(name: str, total: int) -> int:
    """Candidate documents through the real writers until the campaign holds ``total``: a third ranked,
    the rest failed, like a real campaign's funnel. Returns how many were added."""
    from flows import candidates as cands
    from flows.schemas import CandidateDoc, CandidateState, HullRecord

    coll = cands.collection()
    have = coll.count_documents({"campaign": name})
    added = 0
    while have + added < total:
        batch = []
        for i in range(min(10_000, total - have - added)):
            n = have + added + i
            condition = {"formula": "Ta1W1B6", "spacegroup": 191, "formation_energy": round(-5 + n * 1e-5, 6),
                         "scheme": "scale"}
            batch.append(CandidateDoc(candidate_id=cands.candidate_id(name, condition, 0, 1), campaign=name,
                                      condition=condition, sample_index=0, grid_index=n, seed=1,
                                      model={"checkpoint": "scale"}, formula="TaWB6", chemsys="B-Ta-W", structure=None,
                                      stage=CandidateState.FAILED, error="generation: scale test"))
        cands.insert_generated(coll, batch)
        added += len(batch)
        ranked = [d.candidate_id for d in batch[::3]]
        for j in range(50):  # e_above_hull from -0.05 to 0.44 eV/atom, set through the schema-checked writer
            e_hull = -0.05 + 0.01 * j
            hull = HullRecord(decomposition={}, below_hull=e_hull < 0, chemsys="B-Ta-W")
            cands.set_stage_many(coll, {"candidate_id": {"$in": ranked[j::50]}}, CandidateState.RANKED,
                                 {"e_above_hull": e_hull, "hull": hull}, reason="scale test")
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prerelax-steps", type=int, default=3, help="BENCHMARK-ONLY cap on pre-relaxation steps")
    parser.add_argument("--select-window", type=float, default=None,
                        help="BENCHMARK-ONLY selection window (eV/atom), so capped pre-relaxations still reach relax")
    parser.add_argument("--scale", type=int, default=100_000, help="candidate documents for the query latencies")
    parser.add_argument("--uri", help="a MongoDB URI to use instead of a fresh embedded server")
    parser.add_argument("--smoke", action="store_true", help="a small grid (minutes), to try the benchmark")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "campaign_scale.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="crystalgen-rehearsal-") as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "CRYSTALGEN_DATA_DIR": str(tmp / "data"), "CRYSTALGEN_DATABASE": "rehearsal",
               "CRYSTALGEN_CONFIG": os.devnull, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        if args.uri:
            env["CRYSTALGEN_MONGODB_URI"] = args.uri
        os.environ.update(env)
        try:
            report = run(tmp, env, args)
        finally:  # also when the run fails: leave no server behind
            if not args.uri:
                subprocess.run([*CLI, "db", "stop"], capture_output=True, env=env)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print_report(report)


def run(tmp: Path, env: dict, args) -> dict:
    from crystalgen.db import launchpad
    from flows.candidates import database
    from hpc.submit import submit_campaign

    path = campaign_file(tmp, args.prerelax_steps, args.smoke, args.select_window)
    start = time.perf_counter()
    submission = submit_campaign(path)
    lpad, db, name = launchpad(), database(), submission.campaign
    workers = start_workers(tmp, env)
    try:
        wait_until_done(lpad, workers)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=60)
    elapsed = time.perf_counter() - start
    states = {row["_id"]: row["n"] for row in lpad.fireworks.aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}])}
    report = {"campaign": name, "total_s": elapsed, "fireworks": states,
              "candidates": db.candidates.count_documents({"campaign": name}),
              "counts": {r["_id"]: r["n"] for r in db.candidates.aggregate(
                  [{"$match": {"campaign": name}}, {"$group": {"_id": "$stage", "n": {"$sum": 1}}}])},
              "stages": stage_table(lpad, db, name), "db": db_size(db, tmp),
              "latency_s": query_latencies(lpad, name)}
    added = add_documents(name, args.scale)
    report["scaled"] = {"documents": report["candidates"] + added, "latency_s": query_latencies(lpad, name),
                        "db": db_size(db, tmp)}
    return report


def db_size(db, tmp: Path) -> dict:
    try:
        stats = db.command("dbStats")
        return {"data_MB": stats.get("dataSize", 0) / 1e6, "storage_MB": stats.get("storageSize", 0) / 1e6}
    except Exception:  # servers without dbStats: the storage folder on disk
        files = [p for p in (tmp / "data").rglob("*") if p.is_file()]
        return {"on_disk_MB": sum(p.stat().st_size for p in files) / 1e6}


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    table = Table(title=f"rehearsal {report['campaign']}: {report['candidates']} candidates, "
                        f"{sum(report['fireworks'].values())} fireworks {report['fireworks']}, "
                        f"{report['total_s'] / 60:.1f} min, db {report['db']}")
    for column in ("stage", "fireworks", "wall (s)", "launch runtime (s)", "science (s)", "overhead (ms/candidate)"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for row in report["stages"]:
        table.add_row(row["stage"], str(row["fireworks"]), f"{row['wall_s']:.0f}", f"{row['runtime_s']:.0f}",
                      f"{row['science_s']:.0f}", f"{row['overhead_ms_per_candidate']:.1f}")
    console.print(table)
    console.print(f"candidates per stage: {report['counts']}")
    for label, key in ((f"{report['candidates']} documents", "latency_s"),):
        console.print(f"query latency at {label}: " + ", ".join(f"{k} {v:.2f} s" for k, v in report[key].items()))
    scaled = report["scaled"]
    console.print(f"query latency at {scaled['documents']} documents (db {scaled['db']}): "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in scaled["latency_s"].items()))


if __name__ == "__main__":
    main()
