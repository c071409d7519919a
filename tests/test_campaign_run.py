"""`crystalgen campaign run` end to end with the real model, potential and shipped references.

The default run uses a trimmed copy of campaigns/demo.yaml (fewer conditions); the full demo file,
run twice, is the slow test (it is what `make run` does).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from flows import candidates as cands
from flows.candidates import CandidateQuery
from flows.schemas import CandidateState

DEMO = Path(__file__).parent.parent / "campaigns" / "demo.yaml"


def cli():
    from flows.cli import register

    app = typer.Typer()
    register(app)
    return app


def run_twice(campaign_file: Path, results: Path) -> tuple[list, list, dict]:
    runner = CliRunner()
    outputs, id_lists = [], []
    name = yaml.safe_load(campaign_file.read_text())["name"]
    for _ in range(2):
        result = runner.invoke(cli(), ["campaign", "run", str(campaign_file), "--results", str(results)],
                               env={"COLUMNS": "160"})
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
        id_lists.append([d["candidate_id"] for d in CandidateQuery(name, stages=None, duplicates=None).find(cands.collection())])
    report = json.loads((results / name / "report.json").read_text())
    return outputs, id_lists, report


def check(outputs, id_lists, report, results: Path, name: str, expected: int) -> None:
    first, second = id_lists
    assert len(first) == expected, "one candidate per condition and sample"
    assert sorted(first) == sorted(second) and len(set(second)) == len(second), "the rerun added duplicates"
    counts = report["counts"]
    assert sum(counts.values()) == expected
    assert counts["generated"] == counts["prerelaxed"] == counts["selected"] == counts["relaxed"] == 0
    assert report["is_dft"] is False and report["engine"] == "mlip"
    assert "MLIP stand-in" in outputs[0] and "NOT DFT" in outputs[1]
    ranked = report["ranked"]
    twins = CandidateQuery(name, duplicates=True).find(cands.collection())
    assert len(ranked) == counts["hull"] - len(twins), "each crystal is ranked once; twins are named, not ranked"
    assert {t["hull"]["duplicate_of"] for t in twins} <= {r["candidate_id"] for r in ranked}
    assert [r["e_above_hull"] for r in ranked] == sorted(r["e_above_hull"] for r in ranked)
    md = (results / name / "report.md").read_text()
    assert "not DFT" in md and "| stage | count |" in md
    for plot in report["plots"]:
        assert (results / name / plot).read_bytes()[:4] == b"\x89PNG"
    docs = CandidateQuery(name, duplicates=None).find(cands.collection())
    assert all(d["relax"]["is_dft"] is False and d["model"]["checkpoint"].endswith(".pt") for d in docs)


def test_trimmed_demo_runs_twice_without_duplicates(settings, tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    data.update(name="demo-trimmed", compositions=data["compositions"][:1], spacegroups=data["spacegroups"][:1])
    data["energy_grid"] = [{**data["energy_grid"][0], "count": 1}]
    data["samples_per_condition"] = 6
    data["prerelax"]["steps"] = data["relax"]["steps"] = 25  # the CLI, report and idempotence are tested here
    path = tmp_path / "demo-trimmed.yaml"
    path.write_text(yaml.safe_dump(data))
    outputs, ids, report = run_twice(path, tmp_path / "results")
    check(outputs, ids, report, tmp_path / "results", "demo-trimmed", expected=data["samples_per_condition"])


@pytest.mark.slow
def test_demo_campaign_runs_twice_without_duplicates(settings, tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    expected = (len(data["compositions"]) * len(data["spacegroups"]) * sum(s["count"] for s in data["energy_grid"])
                * data["samples_per_condition"])
    outputs, ids, report = run_twice(DEMO, tmp_path / "results")
    check(outputs, ids, report, tmp_path / "results", data["name"], expected)
    failed = CandidateQuery(data["name"], stages=(CandidateState.FAILED,), duplicates=None).find(cands.collection())
    assert all(d["error"] for d in failed), "every failure carries its reason"
