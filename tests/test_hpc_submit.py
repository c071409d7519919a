"""`crystalgen campaign submit`: the real campaign flow on the LaunchPad, dispatch spec, exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

CLI = [sys.executable, "-m", "crystalgen"]


def _cli(*args, timeout=180):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


@pytest.fixture
def campaign_file(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not needed to submit")
    data = {
        "name": "submit-test",
        "model": {"checkpoint": str(checkpoint)},
        "compositions": ["TaB2"],
        "spacegroups": [191],
        "energy_grid": [{"start": -0.5, "step": 0.05, "count": 2}],
        "relax": {"engine": "vasp"},
        "resources": {
            "generate": {"category": "gpu", "walltime": "02:00:00", "gpus": 4},
            "prerelax": {"category": "gpu", "walltime": "01:00:00", "gpus": 1},
            "relax": {"category": "cpu", "walltime": "12:00:00", "nodes": 2},
            "hull": {"category": "cpu", "walltime": "00:30:00"},
        },
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_submit_puts_dispatch_on_every_firework_once(settings, campaign_file):
    from crystalgen.db import launchpad

    first = _cli("campaign", "submit", str(campaign_file))
    assert first.returncode == 0, first.stderr
    assert "submitted campaign submit-test" in first.stdout
    lpad = launchpad()
    fws = {fw["name"]: fw for fw in lpad.fireworks.find({})}
    assert set(fws) == {"references", "generate", "prerelax stage"}
    spec = {name: fw["spec"] for name, fw in fws.items()}
    assert {name: s["_category"] for name, s in spec.items()} == {
        "references": "gpu", "generate": "gpu", "prerelax stage": "gpu"}  # prerelax resources: gpu
    assert spec["generate"]["_priority"] > spec["prerelax stage"]["_priority"]
    assert spec["generate"]["_queueadapter"] == {"walltime": "02:00:00", "nodes": 1, "gpus": 4}
    assert all(s["crystalgen_campaign"] == "submit-test" for s in spec.values())
    wf = lpad.workflows.find_one({})
    assert wf["metadata"]["crystalgen_campaign"] == "submit-test" and wf["metadata"]["crystalgen_fingerprint"]

    # the dispatch rules travel with the jobs, so jobs created at run time get them too
    updates = spec["prerelax stage"]["_tasks"][0]["job"]["config_updates"]
    relax_rule = next(u for u in updates if u["name_filter"] == "relax")
    assert relax_rule["config"]["manager_config"]["_category"] == "cpu"
    assert relax_rule["config"]["manager_config"]["_queueadapter"] == {"walltime": "12:00:00", "nodes": 2}
    assert any(u["config"].get("pass_manager_config") is False for u in updates)

    again = _cli("campaign", "submit", str(campaign_file))
    assert again.returncode == 0, again.stderr
    assert "already submitted" in again.stdout and "unchanged" in again.stdout
    assert lpad.fireworks.count_documents({}) == 3

    forced = _cli("campaign", "submit", str(campaign_file), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "archived previous workflow" in forced.stdout
    states = [fw["state"] for fw in lpad.fireworks.find({}, {"state": 1})]
    assert sorted(states).count("ARCHIVED") == 3 and len(states) == 6
    assert lpad.workflows.count_documents({"state": {"$ne": "ARCHIVED"}}) == 1


def test_submit_rejects_a_bad_campaign_without_writing(settings, campaign_file):
    from crystalgen.db import mongo_client

    data = yaml.safe_load(campaign_file.read_text())
    data["resources"]["relax"]["category"] = "tpu"
    campaign_file.write_text(yaml.safe_dump(data))
    result = _cli("campaign", "submit", str(campaign_file))
    assert result.returncode == 1
    assert "resources.relax.category" in result.stderr and "Traceback" not in result.stderr
    assert mongo_client()[settings.database].fireworks.count_documents({}) == 0


def test_dynamic_jobs_get_their_own_stage_not_their_parents():
    """jobflow would copy the GPU generate job's manager_config onto the jobs it fans out."""
    from jobflow import Flow, JobStore, Response, job
    from maggma.stores import MemoryStore

    from hpc.dispatch import Dispatch, apply_dispatch

    @job(name="relax")
    def relax(x):
        return x

    @job(name="hull")
    def hull(xs):
        return xs

    @job(name="generate")
    def generate(n):
        jobs = [relax(i) for i in range(n)]
        return Response(output=n, addition=Flow([*jobs, hull([j.output for j in jobs])]))

    gen = generate(2)
    apply_dispatch(Flow([gen]), Dispatch.for_campaign("c", {"relax": "bigmem"}))
    store = JobStore(MemoryStore())
    store.connect()
    response = gen.run(store)
    added = {j.name: j.config.manager_config for j in response.addition.jobs}
    assert gen.config.manager_config["_category"] == "gpu"
    assert added["relax"]["_category"] == "bigmem" and added["hull"]["_category"] == "cpu"
    assert added["relax"]["crystalgen_campaign"] == "c" and added["relax"]["crystalgen_stage"] == "relax"
    assert json.dumps(added)  # plain data, goes into the firework spec as is


def test_unknown_stage_category_is_named():
    from hpc.dispatch import Dispatch

    with pytest.raises(ValueError, match="unknown stage 'relx'"):
        Dispatch.for_campaign("c", {"relx": "cpu"})
