"""Submit a small campaign flow to FireWorks and run it with separate GPU and CPU worker processes.

The flow has the shape of the real campaign (GPU generate -> dynamic fan-out of VASP relax jobs ->
hull) but stays small and fast: the relax jobs write real VASP inputs with atomate2's
RelaxSetGenerator and run real custodian (VaspErrorHandler) around a fake ``vasp`` executable,
so failures are genuine custodian failures (custodian.json, MaxCorrectionsError) and fixes are
genuine INCAR changes. Workers are ``crystalgen-rlaunch rapidfire`` subprocesses using the
launchpad and fworker files that ``crystalgen hpc init`` renders.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flow_helpers import fireworks_failures
from jobflow import Flow, Response, job

from flows.stages import Stage, StageMaker

TESTS_DIR = Path(__file__).resolve().parent
RLAUNCH = str(Path(sys.executable).with_name("crystalgen-rlaunch"))
CLI = [sys.executable, "-m", "crystalgen"]
CAMPAIGN = "toyTaB"

FAKE_VASP = textwrap.dedent('''
    """Stands in for VASP: reads INCAR/POSCAR, writes CONTCAR/OSZICAR/OUTCAR like a finished run.

    It fails the way VASP does with a ZBRENT line-search error (message on stdout, which custodian
    sends to vasp.out) for the formula named in $FAKE_VASP_ZBRENT unless IBRION = 1. It takes
    $FAKE_VASP_SLEEP seconds and names the Slurm job step it ran in, if any.
    """
    import os, sys, time
    from pymatgen.io.vasp import Incar, Poscar

    time.sleep(float(os.environ.get("FAKE_VASP_SLEEP", 0)))
    if os.environ.get("SLURM_STEP_ID"):
        print(f" slurm job {os.environ['SLURM_JOB_ID']} step {os.environ['SLURM_STEP_ID']}")

    incar = Incar.from_file("INCAR")
    structure = Poscar.from_file("POSCAR").structure
    Poscar(structure).write_file("CONTCAR")
    formula = structure.composition.reduced_formula
    if formula == os.environ.get("FAKE_VASP_ZBRENT") and int(incar.get("IBRION", 2)) != 1:
        print(" ZBRENT: fatal error in bracketing")
        print("     please rerun with smaller EDIFF, or copy CONTCAR to POSCAR and continue")
        sys.exit(0)
    x_b = structure.composition.get_atomic_fraction("B")
    energy = len(structure) * (-9.0 - 0.4 * x_b * (1 - x_b) + (0.15 if "W" in formula else 0.0))
    with open("OSZICAR", "w") as fh:
        fh.write(f"   1 F= {energy:.8E} E0= {energy:.8E}  d E =0.0\\n")
    with open("OUTCAR", "w") as fh:
        fh.write(" General timing and accounting informations for this job:\\n")
    print(" reached required accuracy - stopping structural energy minimisation")
''')


# --------------------------------------------------------------------------- toy campaign jobs


def _structures() -> dict[str, dict]:
    from pymatgen.core import Lattice, Structure

    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.6), ["Ta", "B"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    alb2 = Structure.from_spacegroup("P6/mmm", Lattice.hexagonal(3.1, 3.3), ["Ta", "B"],
                                     [[0, 0, 0], [1 / 3, 2 / 3, 0.5]])
    cscl = Structure(Lattice.cubic(3.2), ["W", "B"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return {"TaB": rocksalt.as_dict(), "TaB2": alb2.as_dict(), "BW": cscl.as_dict()}


def _relax_generator():
    from atomate2.vasp.sets.core import RelaxSetGenerator

    return RelaxSetGenerator(user_incar_settings={"ENCUT": 500, "EDIFF": 1e-5, "EDIFFG": -0.01, "GGA": "PE"})


@dataclass
class ToyVaspRelaxMaker(StageMaker):
    """Shaped like atomate2's RelaxMaker (INCAR in input_set_generator.user_incar_settings)."""

    stage = Stage.RELAX
    name: str = "vasp relax"
    input_set_generator: object = field(default_factory=_relax_generator)

    def make(self, structure, candidate_id: str):
        relax = self.relax(structure, candidate_id)
        relax.name = f"vasp relax {candidate_id}"
        return self.tag(relax, [candidate_id])

    @job
    def relax(self, structure, candidate_id: str):
        from atomate2.vasp.files import write_vasp_input_set
        from custodian import Custodian
        from custodian.vasp.handlers import VaspErrorHandler
        from custodian.vasp.jobs import VaspJob
        from pymatgen.core import Structure
        from pymatgen.io.vasp import Incar, Oszicar

        from flows import candidates as cands

        write_vasp_input_set(structure, self.input_set_generator, potcar_spec=True)
        launcher = shlex.split(os.environ.get("FAKE_VASP_LAUNCHER", ""))  # e.g. srun --exclusive ...
        fake = [*launcher, sys.executable, os.environ["FAKE_VASP_SCRIPT"]]
        Custodian([VaspErrorHandler()], [VaspJob(fake, auto_npar=False)], max_errors=1, polling_time_step=0.1).run()
        final = Structure.from_file("CONTCAR")
        energy = Oszicar("OSZICAR").final_energy / len(final)
        incar = dict(Incar.from_file("INCAR"))
        cands.set_stage(cands.collection(), candidate_id, "relaxed", {
            "structure": final.as_dict(),
            "relax": {"engine": "vasp", "is_dft": False, "energy_per_atom": energy, "incar": incar},  # fake executable
        })
        return {"candidate_id": candidate_id, "energy_per_atom": energy, "formula": final.composition.reduced_formula}


@dataclass
class ToyHullMaker(StageMaker):
    stage = Stage.HULL
    name: str = "hull"

    def make(self, relaxed):
        return self.tag(self.rank(relaxed))

    @job
    def rank(self, relaxed: list) -> dict:
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        from flows import candidates as cands

        refs = [PDEntry(Composition(el), -9.0) for el in ("Ta", "W", "B")]
        refs.append(PDEntry(Composition("TaB"), -9.09 * 2))
        coll = cands.collection()
        results = {}
        for item in relaxed:
            comp = Composition(item["formula"])
            entry = PDEntry(comp, item["energy_per_atom"] * comp.num_atoms)
            diagram = PhaseDiagram([r for r in refs if set(r.composition.elements) <= set(comp.elements)])
            decomposition, e_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
            cands.set_stage(coll, item["candidate_id"], "hull", {
                "e_above_hull": float(e_hull),
                "hull": {"below_hull": bool(e_hull < -1e-6), "chemsys": comp.chemical_system,
                         "decomposition": {d.composition.reduced_formula: float(x) for d, x in decomposition.items()}},
            })
            results[item["candidate_id"]] = float(e_hull)
        return results


@dataclass
class ToyGenerateMaker(StageMaker):
    """Insert the candidates and fan out one VASP relax per candidate plus the hull (from the GPU job)."""

    stage = Stage.GENERATE
    name: str = "generate"
    relax: ToyVaspRelaxMaker | None = None
    hull: ToyHullMaker | None = None

    def make(self):
        return self.tag(self.generate())

    @job
    def generate(self) -> Response:
        from flow_helpers import candidate_doc
        from pymatgen.core import Structure

        from flows import candidates as cands

        docs = []
        for structure in _structures().values():
            s = Structure.from_dict(structure)
            docs.append(candidate_doc(self.campaign, s.composition.reduced_formula, s.get_space_group_info()[1], 0.0,
                                      structure=structure))
        cands.insert_generated(cands.collection(), docs)
        relaxes = [self.relax.make(Structure.from_dict(d.structure), d.candidate_id) for d in docs]
        hull = self.hull.make([r.output for r in relaxes])
        return Response(output=[d.candidate_id for d in docs], addition=Flow([*relaxes, hull], name="relax and hull"))


def toy_campaign_flow(resources=None) -> Flow:
    """``resources``: a StageResources (default: generate on gpu, relax and hull on cpu, default walltimes)."""
    from flows.resources import StageResources
    from hpc.routing import manager_config

    resources = resources or StageResources()

    def common(stage: Stage) -> dict:
        return {"campaign": CAMPAIGN, "manager_config": manager_config(resources.of(stage))}

    maker = ToyGenerateMaker(relax=ToyVaspRelaxMaker(**common(Stage.RELAX)), hull=ToyHullMaker(**common(Stage.HULL)),
                             **common(Stage.GENERATE))
    return Flow([maker.make()], name=f"campaign {CAMPAIGN}")


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def cluster(settings, tmp_path):
    """Config dirs for a GPU and a CPU worker (rendered like `crystalgen hpc init`) and a worker runner."""
    from crystalgen.db import mongo_uri
    from hpc.templates import ClusterOptions, render_cluster_files

    fake = tmp_path / "fake_vasp.py"
    fake.write_text(FAKE_VASP)
    dirs = {}
    for category in ("gpu", "cpu"):
        options = ClusterOptions(category=category, worker_name=f"test-{category}-worker")
        dirs[category] = render_cluster_files(options, settings, mongo_uri(settings), tmp_path / f"config_{category}")

    def run_worker(category: str, zbrent_formula: str = "") -> subprocess.CompletedProcess:
        launch_root = tmp_path / f"launches_{category}"
        launch_root.mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
               "FAKE_VASP_SCRIPT": str(fake), "FAKE_VASP_ZBRENT": zbrent_formula, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(
            [RLAUNCH, "-l", str(dirs[category]["launchpad"]), "-w", str(dirs[category]["fworker"]),
             "rapidfire", "--nlaunches", "0", "--max_loops", "1", "--sleep", "1"],
            cwd=launch_root, env=env, capture_output=True, text=True, timeout=240,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    return run_worker


def _cli(*args, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _snapshot(db) -> dict:
    return {name: sorted((json.dumps(doc, sort_keys=True, default=str) for doc in db[name].find({}, {"_id": 0})))
            for name in ("fireworks", "launches", "workflows", "candidates", "fw_id_assigner")}


def _submit():
    from crystalgen.db import launchpad
    from hpc.submit import submit_flow

    lpad = launchpad()
    return lpad, submit_flow(toy_campaign_flow(), CAMPAIGN, lpad=lpad, content_fingerprint="toy")


# --------------------------------------------------------------------------- tests


def test_gpu_and_cpu_workers_run_their_own_stages(cluster, settings):
    lpad, submission = _submit()
    assert submission.n_fireworks == 1  # the rest appear when generate fans out

    cluster("cpu")  # nothing for a CPU worker before generation has run
    assert lpad.launches.count_documents({}) == 0
    cluster("gpu")
    cluster("cpu")

    fws = list(lpad.fireworks.find({}, {"fw_id": 1, "state": 1, "spec": 1, "name": 1}))
    assert len(fws) == 1 + 3 + 1
    assert {fw["state"] for fw in fws} == {"COMPLETED"}, fireworks_failures(lpad)
    for fw in fws:  # dynamically added fireworks inherited campaign tag, category and priority
        assert fw["spec"]["crystalgen_campaign"] == CAMPAIGN
        expected = "gpu" if fw["spec"]["crystalgen_stage"] == "generate" else "cpu"
        assert fw["spec"]["_category"] == expected, fw["name"]
    stage_by_fw = {fw["fw_id"]: fw["spec"]["crystalgen_stage"] for fw in fws}
    assert sorted(stage_by_fw.values()) == ["generate", "hull", "relax", "relax", "relax"]
    priorities = {fw["spec"]["crystalgen_stage"]: fw["spec"]["_priority"] for fw in fws}
    assert priorities["generate"] > priorities["relax"] > priorities["hull"]

    ran_by = {}
    for launch in lpad.launches.find({}, {"fw_id": 1, "fworker": 1, "host": 1}):
        ran_by.setdefault(launch["fworker"]["name"], set()).add(stage_by_fw[launch["fw_id"]])
    assert ran_by == {"test-gpu-worker": {"generate"}, "test-cpu-worker": {"relax", "hull"}}

    listed = _cli("candidates", CAMPAIGN, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 3
    e_hull = [row["e_above_hull"] for row in rows]
    assert all(isinstance(e, float) for e in e_hull) and e_hull == sorted(e_hull)
    assert [row["formula"] for row in rows] == ["TaB2", "TaB", "BW"]  # toy energies: -0.029, -0.01, +0.05
    assert [row["below_hull"] for row in rows] == [True, True, False]  # 0.01 eV/atom below the toy reference

    status = _cli("campaign", "status", CAMPAIGN, "--json")
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)
    assert summary["fireworks"]["relax"] == {"COMPLETED": 3}
    assert summary["candidates"]["hull"] == 3 and summary["lost_fw_ids"] == []
    assert summary["funnel"] is None, "the toy flow has no hull Maker, so nothing recorded a funnel"
    tables = _cli("campaign", "status", CAMPAIGN)
    assert tables.returncode == 0 and "not recorded yet" in tables.stdout, tables.stdout
    live = json.loads(_cli("campaign", "status", CAMPAIGN, "--json", "--funnel").stdout)
    funnel = live["funnel"]["overall"]
    assert funnel["generated"] == funnel["relaxed"] == 3 and live["funnel"]["window"] == 0.1
    tables = _cli("campaign", "status", CAMPAIGN)  # now the recorded one
    assert tables.returncode == 0 and "discovery funnel" in tables.stdout and "S.U.N. rate" in tables.stdout, tables.stdout

    again = _cli("campaign", "status", "no-such-campaign")
    assert again.returncode == 1 and "no campaign 'no-such-campaign'" in again.stderr


def test_resubmit_fixes_zbrent_and_lost_run(cluster, settings):
    from fireworks import FWorker
    from pymatgen.core import Structure

    from crystalgen.db import mongo_client
    from hpc import resubmit as rs

    lpad, _ = _submit()
    cluster("gpu")
    relax_fws = {fw["name"]: fw["fw_id"] for fw in lpad.fireworks.find({"spec.crystalgen_stage": "relax"})}
    formula_of = {}
    for name, fw_id in relax_fws.items():
        spec = lpad.fireworks.find_one({"fw_id": fw_id})["spec"]
        formula_of[fw_id] = spec["_tasks"][0]["job"]["function_args"][0]  # structure dict
        formula_of[fw_id] = Structure.from_dict(formula_of[fw_id]).composition.reduced_formula
    assert sorted(formula_of.values()) == ["BW", "TaB", "TaB2"], formula_of
    lost_fw = next(fw_id for fw_id, f in formula_of.items() if f == "BW")
    zbrent_fw = next(fw_id for fw_id, f in formula_of.items() if f == "TaB2")

    # A worker checked out the BW relaxation and vanished: RUNNING, last heartbeat 6 hours ago.
    lost_dir = Path(settings.data_dir) / "lost_launch"
    lost_dir.mkdir(parents=True)
    lpad.checkout_fw(FWorker(name="vanished-node", category="cpu"), str(lost_dir), fw_id=lost_fw)
    old = (datetime.now(UTC) - timedelta(hours=6)).isoformat()
    launch_id = lpad.fireworks.find_one({"fw_id": lost_fw})["launches"][-1]
    lpad.launches.update_one({"launch_id": launch_id},
                             {"$set": {"state_history.$[].updated_on": old, "state_history.$[].created_on": old}})

    cluster("cpu", zbrent_formula="TaB2")  # TaB2 hits ZBRENT; custodian gives up after its own fix
    assert lpad.get_fw_by_id(zbrent_fw).state == "FIZZLED"
    assert lpad.get_fw_by_id(lost_fw).state == "RUNNING"

    db = mongo_client()[settings.database]
    before = _snapshot(db)
    dry = _cli("resubmit", CAMPAIGN, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "zbrent" in dry.stdout and "lost" in dry.stdout and "dry run" in dry.stdout
    assert _snapshot(db) == before
    capped = _cli("resubmit", CAMPAIGN, "--max-retries", "0")  # past max retries: reported, left alone
    assert capped.returncode == 0 and "left alone" in capped.stdout and "rerun 0 firework(s)" in capped.stdout
    assert _snapshot(db) == before

    plans = {p.fw_id: p for p in rs.plan(lpad, CAMPAIGN)}
    assert set(plans) == {zbrent_fw, lost_fw}
    assert plans[zbrent_fw].diagnosis.error_class.value == "zbrent"
    assert "zbrent" in plans[zbrent_fw].diagnosis.custodian_errors
    assert plans[zbrent_fw].fix.incar["IBRION"] == 1 and plans[zbrent_fw].fix.restart_from_contcar
    assert plans[lost_fw].diagnosis.error_class.value == "lost"
    assert plans[lost_fw].fix.queueadapter["walltime"] == "48:00:00"  # the relax stage default of 24 h, doubled

    done = _cli("resubmit", CAMPAIGN)
    assert done.returncode == 0, done.stderr
    fixed = lpad.fireworks.find_one({"fw_id": zbrent_fw})["spec"]
    assert fixed["crystalgen_retries"] == 1
    maker = fixed["_tasks"][0]["job"]["function"]["@bound"]
    assert maker["input_set_generator"]["user_incar_settings"]["IBRION"] == 1
    assert lpad.fireworks.find_one({"fw_id": lost_fw})["spec"]["_queueadapter"]["walltime"] == "48:00:00"

    cluster("cpu", zbrent_formula="TaB2")  # same fault injection: only the fix makes it pass
    states = {fw["fw_id"]: fw["state"] for fw in lpad.fireworks.find({}, {"fw_id": 1, "state": 1})}
    assert set(states.values()) == {"COMPLETED"}, states
    history = {d["formula"]: d["history"] for d in db.candidates.find()}
    resubmissions = {f: [h["resubmission"] for h in events if "resubmission" in h] for f, events in history.items()}
    assert [r["error_class"] for r in resubmissions["TaB2"]] == ["zbrent"]
    assert [r["error_class"] for r in resubmissions["BW"]] == ["lost"] and resubmissions["TaB"] == []
    assert [h["stage"] for h in history["TaB2"]][-3:] == ["selected", "relaxed", "hull"]  # back, then on
    assert all(d["stage"] == "hull" for d in db.candidates.find())
    assert rs.plan(lpad, CAMPAIGN) == []


@pytest.mark.slow
def test_real_campaign_flow_through_gpu_and_cpu_workers(cluster, settings, tmp_path):
    """The flows layer's CampaignMaker (MLIP relax engine) dispatched by category to two workers."""
    import yaml
    from pymatgen.core import Lattice, Structure

    from crystalgen.db import launchpad
    from hpc.submit import submit_campaign

    structures = [Structure(Lattice.cubic(3.22), ["Ta", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
                  Structure(Lattice.tetragonal(3.1, 3.45), ["Ta", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]])]
    campaign = {
        "name": "taw-fireworks", "compositions": ["TaW"], "spacegroups": [221],
        "energy_grid": {"start": "hull", "step": 0.01, "count": 1}, "samples_per_condition": 2,
        "prerelax": {"e_above_hull_window": 5.0, "chunk_size": 1, "dedupe": False, "steps": 100},
        "relax": {"engine": "mlip", "steps": 100},
        "references": {"file": str(TESTS_DIR / "test_data" / "vasp" / "references.json")},
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(campaign))
    submit_campaign(path, structures={"TaW": [s.as_dict() for s in structures]})

    cluster("gpu")  # references, generate and pre-relaxation (prerelax resources default to gpu)
    cluster("cpu")  # select, relax (MLIP stand-in) and hull
    lpad = launchpad()
    fws = list(lpad.fireworks.find({}, {"state": 1, "spec": 1, "name": 1, "fw_id": 1}))
    assert {fw["state"] for fw in fws} == {"COMPLETED"}, fireworks_failures(lpad)
    by_worker = {}
    stage = {fw["fw_id"]: fw["spec"]["crystalgen_stage"] for fw in fws}
    for launch in lpad.launches.find({}, {"fw_id": 1, "fworker": 1}):
        by_worker.setdefault(launch["fworker"]["name"], set()).add(stage[launch["fw_id"]])
    assert by_worker["test-gpu-worker"] == {"references", "generate", "prerelax"}
    assert by_worker["test-cpu-worker"] == {"select", "relax", "hull"}
    rows = json.loads(_cli("candidates", "taw-fireworks", "--format", "json").stdout)
    assert len(rows) == 2 and all(isinstance(r["e_above_hull"], float) for r in rows)


def _latest_incar(lpad, fw_id: int) -> str:
    from monty.os.path import zpath

    launch_id = lpad.fireworks.find_one({"fw_id": fw_id})["launches"][-1]
    return zpath(str(Path(lpad.launches.find_one({"launch_id": launch_id})["launch_dir"]) / "INCAR"))


ZBRENT_VASP = ("import shutil; shutil.copy('POSCAR', 'CONTCAR'); "
               "print(' ZBRENT: fatal error in bracketing'); print(' please rerun with smaller EDIFF')")


@pytest.mark.slow
def test_resubmit_fixes_a_failed_atomate2_vasp_relax_of_the_real_campaign(settings, tmp_path, monkeypatch):
    """The flows layer's atomate2 RelaxMaker jobs (faked with atomate2.utils.testing.vasp, plus real
    custodian around a VASP that hits ZBRENT unless IBRION = 1), run by an in-process rapidfire."""
    import atomate2.vasp.jobs.base as vasp_base
    from atomate2.utils.testing.vasp import monkeypatch_vasp
    from custodian import Custodian
    from custodian.vasp.handlers import VaspErrorHandler
    from custodian.vasp.jobs import VaspJob
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire
    from jobflow import CURRENT_JOB
    from pymatgen.core import Structure
    from pymatgen.io.vasp import Incar
    from test_flows import taw_campaign

    from crystalgen.db import launchpad, mongo_client
    from flows import candidates as cands
    from flows.conditions import expand_conditions
    from flows.makers import CampaignMaker, mlip_settings
    from flows.makers.relax import vasp_job_name, vasp_reference_job_name
    from flows.references import mlip_references, reference_source
    from hpc import resubmit as rs
    from hpc.routing import campaign_routing
    from hpc.submit import submit_flow

    test_data = TESTS_DIR / "test_data" / "vasp"
    campaign = taw_campaign(name="taw-vasp-fw", samples_per_condition=2, relax={"engine": "vasp"})
    db = mongo_client()[settings.database]
    refs = mlip_references(reference_source(campaign), mlip_settings(campaign)[0], db, progress=False)
    (point,) = expand_conditions(campaign.grid, {"TaW": refs.hull_formation_energy("TaW")})
    ids = [cands.candidate_id(campaign.name, point.as_dict(), k, campaign.seed) for k in range(2)]
    folders = dict(zip((vasp_job_name(cid) for cid in ids), ("TaW_B2", "TaW_tP2"), strict=True))
    folders |= {vasp_reference_job_name(p): f"reference_{p}" for p in ("Ta", "W")}

    patcher = monkeypatch_vasp(monkeypatch, test_data)
    fake = next(patcher)
    # EDIFF is not compared: the ZBRENT fix tightens it to 1e-6 on purpose
    fake(folders, dict.fromkeys(folders, {"incar_settings": ["ENCUT", "EDIFFG", "GGA"],
                                          "check_inputs": ["incar", "potcar"], "clear_inputs": False}))
    faked_run_vasp = vasp_base.run_vasp
    failing = vasp_job_name(ids[0])

    def run_vasp(*args, **kwargs):
        if CURRENT_JOB.job.name == failing and int(Incar.from_file("INCAR").get("IBRION", 2)) != 1:
            Custodian([VaspErrorHandler()], [VaspJob([sys.executable, "-c", ZBRENT_VASP], auto_npar=False)],
                      max_errors=1, polling_time_step=0.1).run()
        return faked_run_vasp(*args, **kwargs)

    monkeypatch.setattr(vasp_base, "run_vasp", run_vasp)
    structures = [Structure.from_file(test_data / f / "inputs" / "POSCAR") for f in ("TaW_B2", "TaW_tP2")]
    flow = CampaignMaker(structures={"TaW": [s.as_dict() for s in structures]},
                         manager_configs=campaign_routing(campaign)).make(campaign)
    lpad = launchpad()
    submit_flow(flow, campaign.name, lpad=lpad)
    monkeypatch.chdir(tmp_path)

    def drain():
        rapidfire(lpad, FWorker(name="both", category=["gpu", "cpu"]), nlaunches=0, max_loops=1, sleep_time=1,
                  strm_lvl="ERROR")

    drain()
    vasp_fw = lpad.fireworks.find_one({"name": failing})
    assert vasp_fw["state"] == "FIZZLED"
    assert cands.get(cands.collection(), [ids[0]])[ids[0]].stage == "failed"

    (planned,) = rs.plan(lpad, campaign.name)
    assert planned.candidate_id == ids[0] and planned.diagnosis.error_class.value == "zbrent"
    assert planned.contcar is not None and planned.fix.incar["IBRION"] == 1
    rs.apply(lpad, campaign.name, [planned])
    drain()

    assert {fw["state"] for fw in lpad.fireworks.find({}, {"state": 1})} == {"COMPLETED"}, fireworks_failures(lpad)
    docs = cands.get(cands.collection(), ids)
    assert {d.stage for d in docs.values()} == {"hull"}
    stages = [h.stage for h in docs[ids[0]].history]
    assert stages[-4:] == ["failed", "selected", "relaxed", "hull"]
    job = lpad.fireworks.find_one({"fw_id": vasp_fw["fw_id"]})["spec"]["_tasks"][0]["job"]
    incar = job["function"]["@bound"]["input_set_generator"]["user_incar_settings"]
    assert incar["IBRION"] == 1 and incar["EDIFF"] == 1e-6 and incar["ENCUT"] == 500  # fixed; campaign's kept
    assert Incar.from_file(_latest_incar(lpad, vasp_fw["fw_id"]))["IBRION"] == 1  # what VASP was given
