"""Campaign files: the schema, the energy grid, and clear refusals of bad input (nothing written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from flows.campaign import CampaignError, load_campaign, parse_campaign
from flows.conditions import expand_conditions, grid_size

CAMPAIGNS = Path(__file__).parent.parent / "campaigns"


def base(tmp_path: Path) -> dict:
    return {
        "name": "bad-input",
        "compositions": ["TaW"],
        "spacegroups": [221],
        "energy_grid": {"start": "hull", "count": 2},
        "relax": {"engine": "mlip"},
    }


def cli():
    from flows.cli import register

    app = typer.Typer()
    register(app)
    return app


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BAD = {
    "unknown element": (lambda d: d.update(compositions=["TaW", "XxB2"]), ["compositions", "unknown element Xx", "XxB2"]),
    "too many sites for the model": (lambda d: d.update(compositions=["TaW", "Ta30W30B10"]),
                                     ["compositions.1", "'Ta30W30B10' has 70 sites"]),
    "space group 0": (lambda d: d.update(spacegroups=[221, 0]), ["spacegroups.1", "greater than or equal to 1", "0"]),
    "space group 231": (lambda d: d.update(spacegroups=[231]), ["spacegroups.0", "less than or equal to 230", "231"]),
    "empty grid": (lambda d: d.update(energy_grid=[]), ["energy_grid", "at least 1 item"]),
    "zero-length scheme": (lambda d: d.update(energy_grid={"start": "hull", "count": 0}), ["energy_grid.0.count", "(got 0)"]),
    "missing checkpoint": (lambda d: d.update(model={"checkpoint": "no/such/model.pt"}), ["model.checkpoint", "no/such/model.pt"]),
    "misspelt field": (lambda d: d.update(prerelax={"fmaxx": 0.1}), ["prerelax.fmaxx", "Extra inputs are not permitted"]),
    "unknown engine": (lambda d: d["relax"].update(engine="abinit"), ["relax.engine", "'abinit'"]),
    "reference file lacks an element": (lambda d: d.update(compositions=["TaMo"]), ["references.file", "Mo"]),
    "NaN energy offset": (lambda d: d.update(energy_grid={"start": "hull", "offset": float("nan"), "count": 2}),
                          ["energy_grid.0.offset", "finite number"]),
    "infinite fmax": (lambda d: d.update(prerelax={"fmax": float("inf")}), ["prerelax.fmax", "finite number"]),
    "NaN window": (lambda d: d.update(prerelax={"e_above_hull_window": float("nan")}),
                   ["prerelax.e_above_hull_window", "finite number"]),
    "seed beyond int64": (lambda d: d.update(seed=2**64), ["seed", "less than or equal to 9223372036854775807"]),
    "grid too large": (lambda d: d.update(energy_grid={"start": -1.0, "step": 1e-6, "count": 1_000_000},
                                          samples_per_condition=1000), ["at most 100,000,000"]),
    "space group cannot hold the composition": (lambda d: d.update(spacegroups=[221, 194]),
                                                ["spacegroups", "TaW in 194", "incompatible_spacegroups: skip"]),
    "unreadable checkpoint": (lambda d: d.update(model={"checkpoint": str(_garbage(d))}),
                              ["model.checkpoint", "cannot be used"]),
    "unknown method override": (lambda d: d.update(model={"method": "gan"}), ["model.method", "gan"]),
    "unknown potential": (lambda d: d.update(prerelax={"potential": "NoSuchModel"}),
                          ["prerelax.potential", "unknown potential 'NoSuchModel'"]),
    "INCAR key VASP does not know": (lambda d: d.update(relax={"engine": "vasp", "incar": {"ENCUTT": 400}}),
                                     ["relax.incar", "ENCUTT"]),
}


def _garbage(data: dict) -> Path:
    path = Path(data["_tmp"]) / "model.pt"
    path.write_bytes(b"a file that exists but is no checkpoint")
    return path


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_campaign_is_refused_with_named_field_and_nothing_written(case, command, tmp_path, settings):
    from crystalgen.db import mongo_client

    data = {**base(tmp_path), "_tmp": str(tmp_path)}
    mutate, expected = BAD[case]
    mutate(data)
    data.pop("_tmp")
    result = CliRunner().invoke(cli(), ["campaign", command, str(write(tmp_path, data))])
    assert result.exit_code == 1, result.output
    for fragment in expected:
        assert fragment in result.output, f"{fragment!r} missing from: {result.output}"
    assert "Traceback" not in result.output
    assert mongo_client()[settings.database].list_collection_names() == []
    assert not (tmp_path / "results").exists()


def test_run_refuses_vasp_without_a_vasp_command(tmp_path, settings):
    from crystalgen.db import mongo_client

    data = base(tmp_path)
    data["relax"] = {"engine": "vasp"}
    result = CliRunner().invoke(cli(), ["campaign", "run", str(write(tmp_path, data))])
    assert result.exit_code == 1 and "no VASP command is configured" in result.output
    assert mongo_client()[settings.database].list_collection_names() == []


def test_run_refuses_a_potential_before_writing_anything(tmp_path, settings):
    """Weights that load but give wrong energies (the guard's case): found by run before it writes."""
    import torch

    from crystalgen.db import mongo_client
    from crystalgen.potentials import DEFAULT_POTENTIAL, load_potential

    broken = load_potential(DEFAULT_POTENTIAL)
    torch.manual_seed(0)
    for layer in broken.model.model.final_layer.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    folder = tmp_path / "weights" / DEFAULT_POTENTIAL  # named like the real model: held to its references
    broken.model.save(folder, makedirs=True)
    for potential, expected in [(str(folder), "failed the sanity check")]:
        data = base(tmp_path)
        data["prerelax"] = {"potential": potential}
        result = CliRunner().invoke(cli(), ["campaign", "run", str(write(tmp_path, data))])
        assert result.exit_code == 1, result.output
        assert "prerelax.potential" in result.output and expected in result.output, result.output
        assert "Traceback" not in result.output
    assert mongo_client()[settings.database].list_collection_names() == []


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    result = CliRunner().invoke(cli(), ["campaign", "validate", str(bad)])
    assert result.exit_code == 1 and "not valid YAML" in result.output
    result = CliRunner().invoke(cli(), ["campaign", "plan", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "campaign file not found" in result.output


def test_entry_point_reports_errors_without_traceback(tmp_path):
    data = base(tmp_path)
    data["spacegroups"] = [300]
    env = {**os.environ, "CRYSTALGEN_CONFIG": str(tmp_path / "none.yaml")}
    proc = subprocess.run([sys.executable, "-m", "crystalgen", "campaign", "validate", str(write(tmp_path, data))],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    assert "spacegroups.0" in proc.stderr and "300" in proc.stderr and "Traceback" not in proc.stderr


def test_energy_schemes_of_the_paper():
    campaign = parse_campaign({
        "name": "grid", "compositions": ["Ta1W2B5"], "spacegroups": [191],
        "energy_grid": [
            {"name": "A", "start": "hull", "step": 0.01, "count": 21},
            {"name": "B", "start": "hull", "offset": -0.2, "step": 0.01, "count": 21},
            {"name": "C", "start": "hull", "offset": -1.0, "step": 0.1, "count": 21},
            {"name": "abs", "start": -0.5, "step": 0.1, "count": 3},
        ],
    })
    hull = -0.431
    points = expand_conditions(campaign.grid, {"TaB5W2": hull})
    by_scheme = {}
    for p in points:
        for label in p.scheme.split("+"):
            by_scheme.setdefault(label, []).append(p.formation_energy)
    by_scheme = {label: sorted(values) for label, values in by_scheme.items()}
    assert by_scheme["A"] == pytest.approx([hull + 0.01 * i for i in range(21)])
    assert by_scheme["B"] == pytest.approx([hull - 0.2 + 0.01 * i for i in range(21)])
    assert by_scheme["C"] == pytest.approx([hull - 1.0 + 0.1 * i for i in range(21)])
    assert by_scheme["abs"] == pytest.approx([-0.5, -0.4, -0.3])
    assert grid_size(campaign.grid) == 66
    # A and B share the hull point; C meets A at +0.1, +0.2 and B at -0.2, -0.1 and the hull itself
    assert len(points) == 66 - 1 - 5
    assert len({(p.formula, p.spacegroup, p.formation_energy) for p in points}) == len(points)
    with pytest.raises(ValueError, match="hull energy, which is unknown"):
        expand_conditions(campaign.grid, {})


def test_hull_based_conditions_do_not_follow_float_noise_in_the_hull_energy():
    """Two runs whose MLIP references differ in the 6th decimal must ask for the same conditions."""
    campaign = parse_campaign({
        "name": "grid", "compositions": ["Ta1W1B2"], "spacegroups": [191],
        "energy_grid": [{"name": "A", "start": "hull", "step": 0.05, "count": 2}],
    })
    first = expand_conditions(campaign.grid, {"TaB2W": -0.6655457})
    second = expand_conditions(campaign.grid, {"TaB2W": -0.6655451})
    assert first == second
    assert [p.formation_energy for p in first] == [-0.666, -0.616]


def test_campaign_error_names_several_fields_at_once():
    with pytest.raises(CampaignError) as info:
        parse_campaign({"name": "x y", "compositions": [], "spacegroups": [1], "energy_grid": {"step": 0}})
    message = str(info.value)
    assert "name:" in message and "compositions:" in message and "energy_grid.0.step: must not be 0" in message


def test_shipped_campaigns_validate_and_the_paper_plan_adds_up():
    demo = load_campaign(CAMPAIGNS / "demo.yaml")
    assert demo.relax.engine == "mlip"
    paper = load_campaign(CAMPAIGNS / "tawb_paper.yaml")
    assert paper.relax.engine == "vasp"
    assert paper.relax.incar_settings == {"ENCUT": 500, "EDIFF": 1e-5, "EDIFFG": -0.01, "GGA": "PE"}
    assert len(paper.spacegroups) == 19 and len(paper.compositions) == 3
    assert [s.count for s in paper.energy_grid] == [21, 21, 21]
    assert paper.incompatible_spacegroups == "skip"
    assert sorted(paper.grid.excluded) == sorted(
        [(f, g) for f in paper.compositions for g in (62, 63, 127, 140, 194)]
        + [(f, g) for f in ("Ta1W2B5", "Ta2W1B5") for g in (221, 225)])
    assert grid_size(paper.grid) == (3 * 19 - 19) * 63

    result = CliRunner().invoke(cli(), ["campaign", "plan", str(CAMPAIGNS / "tawb_paper.yaml")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "19 composition/space-group pairs left out" in text
    assert "2,394 grid points, 2,166 distinct conditions" in text
    assert "relax (VASP, atomate2)" in text


def test_validate_and_plan_read_yaml_within_bounds(tmp_path):
    """Aliases that expand a few lines into millions of nodes, and oversized files, are refused quickly."""
    bomb = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x, x]"]
                      + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                         f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                         f"*{chr(97 + i)}, *{chr(97 + i)}]" for i in range(8)])
    (tmp_path / "bomb.yaml").write_text(bomb + "\nname: bomb\n")
    (tmp_path / "huge.yaml").write_text("name: huge\n" + "# padding\n" * 200_000)
    for name, expected in (("bomb.yaml", "expands to more than"), ("huge.yaml", "at most 1,048,576")):
        for command in ("validate", "plan"):
            result = CliRunner().invoke(cli(), ["campaign", command, str(tmp_path / name)])
            assert result.exit_code == 1 and expected in result.output, result.output


def test_plan_of_a_million_conditions_is_immediate(tmp_path):
    data = {**base(tmp_path), "energy_grid": {"start": -2.0, "step": 1e-6, "count": 1_000_000}}
    result = CliRunner().invoke(cli(), ["campaign", "plan", str(write(tmp_path, data))], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "1,000,000 distinct conditions" in " ".join(result.output.split())


def test_model_checkpoint_may_name_a_shipped_checkpoint(tmp_path):
    """`model.checkpoint: demo-cfm-n.pt` finds the shipped file; a name that is nowhere fails naming it."""
    data = yaml.safe_load((CAMPAIGNS / "demo.yaml").read_text())
    data["model"] = {"checkpoint": "demo-cfm-n.pt"}
    path = tmp_path / "old-default.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_campaign(path).checkpoint_path().name == "demo-cfm-n.pt"
    data["model"] = {"checkpoint": "no-such-model.pt"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CampaignError, match="model.checkpoint: checkpoint file not found: .*no-such-model.pt"):
        load_campaign(path).checkpoint_path()
