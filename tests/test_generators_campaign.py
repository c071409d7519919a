"""Campaigns with several generators: model and baselines on one funnel, novelty against known phases,
rescue recorded, and the bad inputs a generator list can bring (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from flows import candidates as cands
from flows.candidates import CandidateQuery


def cli():
    from flows.cli import register

    app = typer.Typer()
    register(app)
    return app


def campaign_data(**overrides) -> dict:
    """TaB2 in P6/mmm (AlB2 type: the shipped reference TaB2) and in Im-3m, which no TaB2 cell fits."""
    data = {
        "name": "generators-test",
        "generator": ["model", "random-symmetric", "substitution"],
        "compositions": ["TaB2"],
        "spacegroups": [191, 229],
        "incompatible_spacegroups": "record",
        "energy_grid": {"start": "hull", "step": 0.01, "count": 1},
        "samples_per_condition": 1,
        "prerelax": {"e_above_hull_window": 10.0, "chunk_size": 8, "dedupe": False, "steps": 60},
        "relax": {"engine": "mlip", "steps": 60},
    }
    data.update(overrides)
    return data


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_three_generators_share_one_funnel_and_a_known_phase_is_not_novel(settings, tmp_path):
    path = write(tmp_path, campaign_data())
    result = CliRunner().invoke(cli(), ["campaign", "run", str(path), "--results", str(tmp_path / "results")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    docs = CandidateQuery("generators-test", stages=None, duplicates=None).find(cands.collection())
    assert sorted(d["generator"] for d in docs) == sorted(["model", "random-symmetric", "substitution"] * 2)
    assert len({d["candidate_id"] for d in docs}) == 6, "each generator has its own ids"

    impossible = [d for d in docs if d["condition"]["spacegroup"] == 229]
    assert len(impossible) == 3 and all(d["stage"] == "failed" for d in impossible)
    assert all("Wyckoff positions of space group 229" in d["error"] for d in impossible)

    by_generator = {d["generator"]: d for d in docs if d["condition"]["spacegroup"] == 191}
    substituted = by_generator["substitution"]
    assert substituted["model"]["origin"].startswith("substitution from"), substituted["model"]
    assert substituted["stage"] == "hull", substituted.get("error")
    assert substituted["novel"] is False and substituted["matches"] == "reference:TaB2"
    for doc in by_generator.values():
        if doc["stage"] == "hull":
            assert isinstance(doc["novel"], bool) and (doc["matches"] is None) == doc["novel"]
        if doc["rescue"]:
            assert doc["history"][0]["rescue"] == doc["rescue"], "a repair is written into the history"

    from hpc.query import find_candidates

    known = find_candidates("generators-test", novel=False, duplicates=None)
    assert substituted["candidate_id"] in {d["candidate_id"] for d in known}
    assert all(d["novel"] is False for d in known)
    assert {d["generator"] for d in find_candidates("generators-test", generator="substitution", stage=None)} == {"substitution"}

    from flows.funnel import recorded_funnel

    assert recorded_funnel(cands.database(), "generators-test")["by"]["generator"]["model"]["generated"] == 2

    report = json.loads((tmp_path / "results" / "generators-test" / "report.json").read_text())
    per_generator = report["funnel"]["by"]["generator"]
    assert set(per_generator) == {"model", "random-symmetric", "substitution"}
    assert all(row["generated"] == 2 for row in per_generator.values())
    assert per_generator["substitution"]["valid"] == 1 and per_generator["substitution"]["novel"] == 0
    assert report["funnel"]["overall"]["rescued"] == sum(bool(d["rescue"]) for d in docs)
    markdown = (tmp_path / "results" / "generators-test" / "report.md").read_text()
    assert "## Discovery funnel" in markdown and "| random-symmetric |" in markdown
    assert "reference:TaB2" in markdown, "the ranking names the known phase a candidate is"


def test_generator_mistakes_are_refused_before_anything_runs(settings, tmp_path):
    from crystalgen.db import mongo_client

    runner = CliRunner()
    unknown = runner.invoke(cli(), ["campaign", "validate", str(write(tmp_path, campaign_data(generator=["modle"])))])
    assert unknown.exit_code == 1
    assert "generator" in unknown.output and "'modle'" in unknown.output and "random-symmetric" in unknown.output

    twice = runner.invoke(cli(), ["campaign", "validate", str(write(tmp_path, campaign_data(generator=["model", "model"])))])
    assert twice.exit_code == 1 and "listed twice" in twice.output

    empty = tmp_path / "cifs"
    empty.mkdir()
    data = campaign_data(generator="substitution", substitution={"sources": [str(empty)]})
    result = runner.invoke(cli(), ["campaign", "run", str(write(tmp_path, data))])
    assert result.exit_code == 1
    assert "substitution.sources.0" in result.output and "holds no .cif files" in result.output
    assert "Traceback" not in result.output
    assert mongo_client()[settings.database].list_collection_names() == [], "nothing written"

    strict = runner.invoke(cli(), ["campaign", "validate",
                                   str(write(tmp_path, campaign_data(incompatible_spacegroups="error")))])
    assert strict.exit_code == 1 and "TaB2 in 229" in strict.output and "record" in strict.output


def test_model_ids_do_not_change_when_baselines_join():
    condition = {"formula": "TaB2", "spacegroup": 191, "formation_energy": -0.5, "scheme": "x"}
    model = cands.candidate_id("c", condition, 0, 0)
    assert cands.candidate_id("c", condition, 0, 0, "model") == model
    assert len({model, cands.candidate_id("c", condition, 0, 0, "random-symmetric"),
                cands.candidate_id("c", condition, 0, 0, "substitution")}) == 3
