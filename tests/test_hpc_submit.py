"""`crystalgen campaign submit`: the real campaign flow on the LaunchPad, recorded and added exactly once."""

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
    data = {
        "name": "submit-test",
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


def test_submit_adds_the_campaign_once(settings, campaign_file):
    from crystalgen.db import launchpad, mongo_client

    first = _cli("campaign", "submit", str(campaign_file))
    assert first.returncode == 0, first.stderr
    assert "submitted campaign submit-test" in first.stdout
    lpad = launchpad()
    fws = {fw["name"]: fw for fw in lpad.fireworks.find({})}
    assert set(fws) == {"references", "generate", "prerelax"}
    spec = {name: fw["spec"] for name, fw in fws.items()}
    assert spec["generate"]["_queueadapter"] == {"walltime": "02:00:00", "nodes": 1, "gpus": 4}
    assert all(s["crystalgen_campaign"] == "submit-test" for s in spec.values())
    wf = lpad.workflows.find_one({})
    assert wf["metadata"]["crystalgen_campaign"] == "submit-test" and wf["metadata"]["crystalgen_fingerprint"]
    password = settings.mongodb_uri.split("@")[0].rsplit(":", 1)[1]  # the session server requires a login
    assert password and all(password not in json.dumps(fw, default=str) for fw in lpad.fireworks.find({})), \
        "firework specs (and FW.json in launch directories) must not carry the database password"
    record = mongo_client()[settings.database].campaigns.find_one({"name": "submit-test"})
    assert record["prerelax_potential"]["spec"] == "TensorNet-MatPES-PBE-v2025.1-PES"  # resolved once, recorded
    assert record["fingerprint"] == wf["metadata"]["crystalgen_fingerprint"]

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
    data["resources"]["relax"]["category"] = "gpu a100"  # a category is one word
    campaign_file.write_text(yaml.safe_dump(data))
    result = _cli("campaign", "submit", str(campaign_file))
    assert result.returncode == 1
    assert "resources.relax.category" in result.stderr and "Traceback" not in result.stderr
    assert mongo_client()[settings.database].fireworks.count_documents({}) == 0
