"""Every firework of a campaign, made up front or at run time, runs where its stage's ``resources`` say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flow_helpers import fireworks_failures
import yaml

from flows.resources import DEFAULT_PRIORITY
from flows.stages import Stage

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_REFERENCES = ROOT / "flows" / "assets" / "references" / "tawb_constructed.json"


def campaign_file(tmp_path: Path, name: str, categories: dict[str, str], **changes) -> Path:
    """A copy of a shipped campaign with one FireWorks category per stage (``changes`` replace top-level keys)."""
    data = yaml.safe_load((ROOT / "campaigns" / name).read_text())
    data["resources"] = {stage: {**(data.get("resources") or {}).get(stage, {}), "category": category}
                         for stage, category in categories.items()}
    data.update(changes)
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def distinct_categories(**overrides) -> dict[str, str]:
    return {stage.value: overrides.get(stage.value, f"cat-{stage.value}") for stage in Stage}


def planned_routing(spec: dict) -> dict[str, dict]:
    """Manager configs of the stages a submitted pre-relax fan-out will create at run time (from its Makers)."""
    maker = spec["_tasks"][0]["job"]["function"]["@bound"]
    select = maker["select"]
    return {"prerelax": maker["chunk"]["manager_config"], "select": select["manager_config"],
            "relax": select["relax"]["manager_config"], "hull": select["hull"]["manager_config"]}


def submitted_routing(lpad) -> dict[str, dict]:
    """Stage -> (category, priority, queue request) of the static fireworks and of the planned ones."""
    routing = {}
    for fw in lpad.fireworks.find({"state": {"$ne": "ARCHIVED"}}):
        spec = fw["spec"]
        routing[spec["crystalgen_stage"]] = {k: spec[k] for k in ("_category", "_priority", "_queueadapter")}
        if spec["crystalgen_stage"] == "prerelax":
            routing |= {stage: dict(config) for stage, config in planned_routing(spec).items()}
    return routing


@pytest.mark.parametrize("name", ["demo.yaml", "tawb_paper.yaml"])
def test_shipped_campaigns_submit_with_each_stage_on_its_category(settings, tmp_path, name):
    from crystalgen.db import launchpad
    from hpc.submit import submit_campaign

    lpad = launchpad()
    submit_campaign(campaign_file(tmp_path, name, distinct_categories()))
    before = submitted_routing(lpad)
    assert set(before) == {stage.value for stage in Stage}
    for stage, config in before.items():
        assert config["_category"] == f"cat-{stage}" and config["_priority"] == DEFAULT_PRIORITY[Stage(stage)]
    for fw in lpad.fireworks.find():
        assert fw["spec"]["crystalgen_campaign"] in ("demo-tawb", "tawb-paper")

    # moving one stage (created at run time) to another category moves that stage only
    submit_campaign(campaign_file(tmp_path, name, distinct_categories(relax="vasp-nodes")), force=True)
    after = submitted_routing(lpad)
    assert {s for s in Stage if before[s.value] != after[s.value]} == {Stage.RELAX}
    assert after["relax"]["_category"] == "vasp-nodes"


def _fake_vasp_folders(lpad, root: Path, fake, registered: set[str]) -> None:
    """A fake-VASP reference folder (atomate2.utils.testing.vasp) for every VASP job now on the LaunchPad.

    "VASP" returns the input structure with a made-up energy: -9 eV/atom for elements, -9.1 otherwise.
    """
    from pymatgen.core import Structure
    from test_data.vasp.build_references import write_fake_vasp_folder

    for fw in lpad.fireworks.find({"spec.crystalgen_stage": "relax", "name": {"$regex": "^vasp "}}):
        if fw["name"] in registered:
            continue
        structure = Structure.from_dict(fw["spec"]["_tasks"][0]["job"]["function_args"][0])
        folder = f"f{len(registered)}"
        write_fake_vasp_folder(root / folder, structure, -9.0 if structure.composition.is_element else -9.1)
        fake({fw["name"]: folder}, {fw["name"]: {"incar_settings": ["ENCUT", "EDIFF", "EDIFFG", "GGA"],
                                                 "check_inputs": ["incar"]}})
        registered.add(fw["name"])


def test_demo_runs_through_fireworks_workers_each_on_its_stages_category(settings, tmp_path, monkeypatch):
    """The demo (cut to 3 samples, 5 pre-relax steps, VASP faked) through one FireWorks worker per category."""
    from atomate2.utils.testing.vasp import monkeypatch_vasp
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire

    from crystalgen.db import launchpad
    from hpc.submit import submit_campaign

    phases = [p for p in json.loads(SHIPPED_REFERENCES.read_text())["phases"] if p["name"] in ("Ta", "W", "B", "TaB2")]
    references = tmp_path / "references.json"
    references.write_text(json.dumps({"energy_source": None, "phases": phases}))
    demo = yaml.safe_load((ROOT / "campaigns" / "demo.yaml").read_text())
    path = campaign_file(tmp_path, "demo.yaml", distinct_categories(), compositions=["TaWB2"], spacegroups=[191],
                         samples_per_condition=3, energy_grid=[{**demo["energy_grid"][0], "count": 1}],
                         prerelax={**demo["prerelax"], "steps": 5, "chunk_size": 2},
                         relax={"engine": "vasp"}, references={"source": "file", "file": str(references)})
    lpad = launchpad()
    submit_campaign(path)

    vasp_root = tmp_path / "vasp"
    patcher = monkeypatch_vasp(monkeypatch, vasp_root)
    fake, registered = next(patcher), set()
    monkeypatch.chdir(tmp_path)
    for _ in range(4):  # pipeline order per round; a stage's fireworks appear when the one before has run
        for stage in Stage:
            if stage is Stage.RELAX:
                _fake_vasp_folders(lpad, vasp_root, fake, registered)
            rapidfire(lpad, FWorker(name=f"worker-{stage.value}", category=f"cat-{stage.value}"), nlaunches=0,
                      max_loops=1, sleep_time=0, strm_lvl="ERROR")
        if lpad.fireworks.count_documents({"state": {"$ne": "COMPLETED"}}) == 0:
            break

    fws = list(lpad.fireworks.find({}, {"fw_id": 1, "name": 1, "state": 1, "spec": 1}))
    assert {fw["state"] for fw in fws} == {"COMPLETED"}, fireworks_failures(lpad)
    stages = {fw["fw_id"]: fw["spec"]["crystalgen_stage"] for fw in fws}
    assert set(stages.values()) == {stage.value for stage in Stage}, "static and run-time fireworks of every stage"
    assert len(fws) > 3 + 4, "chunks, selection, VASP relax + record per reference phase, hull were created at run time"
    for fw in fws:
        stage = Stage(fw["spec"]["crystalgen_stage"])
        assert fw["spec"]["_category"] == f"cat-{stage.value}", fw["name"]
        assert fw["spec"]["_priority"] == DEFAULT_PRIORITY[stage], fw["name"]
        assert fw["spec"]["crystalgen_campaign"] == "demo-tawb"
    for launch in lpad.launches.find({}, {"fw_id": 1, "fworker": 1}):
        assert launch["fworker"]["name"] == f"worker-{stages[launch['fw_id']]}"
    relaxed = [fw for fw in fws if fw["name"].startswith("vasp relax ")]
    assert all(fw["spec"]["crystalgen_candidates"] == [fw["name"].split()[-1]] for fw in relaxed)
