"""A campaign run whose stage crashes exits non-zero, says which stage, keeps what finished and resumes."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

TEST_REFERENCES = Path(__file__).parent / "test_data" / "vasp" / "references.json"


def cli():
    from flows.cli import register

    app = typer.Typer()
    register(app)
    return app


def test_a_crashed_stage_fails_the_run_and_a_rerun_resumes(settings, tmp_path, monkeypatch):
    import crystalgen.relax
    from flows import candidates as cands

    campaign = {
        "name": "crashing", "compositions": ["TaW"], "spacegroups": [221],
        "energy_grid": {"start": "hull", "step": 0.01, "count": 1}, "samples_per_condition": 3,
        "prerelax": {"e_above_hull_window": 5.0, "chunk_size": 1, "dedupe": False, "steps": 20},
        "relax": {"engine": "mlip", "steps": 20}, "references": {"file": str(TEST_REFERENCES)},
    }
    path = tmp_path / "crashing.yaml"
    path.write_text(yaml.safe_dump(campaign))
    real, calls = crystalgen.relax.relax_structures, []

    def second_chunk_crashes(structures, *args, **kwargs):
        if kwargs.get("description", "").startswith("prerelax"):
            calls.append(len(structures))
            if len(calls) == 2:
                raise RuntimeError("simulated crash in a pre-relax chunk")
        return real(structures, *args, **kwargs)

    monkeypatch.setattr(crystalgen.relax, "relax_structures", second_chunk_crashes)
    args = ["campaign", "run", str(path), "--results", str(tmp_path / "results")]
    result = CliRunner().invoke(cli(), args, env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "stage prerelax: 1 job(s) failed (prerelax 2/3): RuntimeError: simulated crash in a pre-relax chunk" \
        in result.output
    assert "Traceback" not in result.output, "the traceback goes to the log file, not the terminal"
    log = (tmp_path / "results" / "crashing" / "run.log").read_text()
    assert "Traceback" in log and "simulated crash" in log
    assert (tmp_path / "results" / "crashing" / "report.json").is_file(), "the report of what finished is written"
    counts = cands.count_by_stage(cands.collection(), "crashing")
    assert counts["prerelaxed"] == 2 and counts["generated"] == 1, "finished chunks are kept"

    monkeypatch.setattr(crystalgen.relax, "relax_structures", real)
    rerun = CliRunner().invoke(cli(), args, env={"COLUMNS": "200"})
    assert rerun.exit_code == 0, rerun.output
    assert cands.count_by_stage(cands.collection(), "crashing")["hull"] == 3
