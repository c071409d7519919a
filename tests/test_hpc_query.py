"""`crystalgen candidates`: filters, ranking, output formats, and that the queries run on indexes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from pymatgen.core import Lattice, Structure

CLI = [sys.executable, "-m", "crystalgen"]

#: (formula, spacegroup, stage, e_above_hull)
ROWS = [
    ("TaB2", 191, "hull", 0.12),
    ("TaB2", 191, "hull", -0.02),
    ("WB2", 194, "hull", 0.01),
    ("TaB", 63, "hull", -0.005),
    ("TaB2", 187, "relaxed", None),
    ("WB", 141, "generated", None),
]


@pytest.fixture
def candidates_db(settings):
    from flow_helpers import candidate_doc

    from flows import candidates as cands

    coll = cands.collection()
    for i, (formula, spg, stage, ehull) in enumerate(ROWS):
        structure = Structure(Lattice.cubic(3.0 + 0.1 * i), ["Ta", "B"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        doc = candidate_doc("qc", formula, spg, -0.3, sample_index=i, structure=structure.as_dict())
        cands.insert_generated(coll, [doc])
        if ehull is not None:
            cands.set_stage(coll, doc.candidate_id, "relaxed", {"relax": {"engine": "vasp", "is_dft": True,
                                                                          "energy_per_atom": -9 + ehull}})
            cands.set_stage(coll, doc.candidate_id, "hull", {
                "e_above_hull": ehull, "hull": {"below_hull": ehull < 0, "decomposition": {}, "chemsys": "B-Ta"}})
        elif stage != "generated":
            cands.set_stage(coll, doc.candidate_id, stage)
    other = candidate_doc("other", "TaB2", 191, -0.3, structure=None)
    cands.insert_generated(coll, [other])
    cands.set_stage(coll, other.candidate_id, "hull", {
        "e_above_hull": -1.0, "hull": {"below_hull": True, "decomposition": {}, "chemsys": "B-Ta"}})
    return coll


def test_filters_and_ranking(candidates_db):
    from hpc.query import find_candidates

    def ehulls(**kw):
        return [d["e_above_hull"] for d in find_candidates("qc", coll=candidates_db, **kw)]

    assert ehulls() == [-0.02, -0.005, 0.01, 0.12]  # ranked only, other campaign excluded
    assert ehulls(below_hull=True) == [-0.02, -0.005]
    assert ehulls(max_e_above_hull=0.05) == [-0.02, -0.005, 0.01]
    assert ehulls(formula="B2Ta") == [-0.02, 0.12]  # any way of writing the formula
    assert ehulls(spacegroup=194) == [0.01]
    assert ehulls(limit=2) == [-0.02, -0.005]
    assert [d["stage"] for d in find_candidates("qc", coll=candidates_db, stage="relaxed")] == ["relaxed"]
    assert len(find_candidates("qc", coll=candidates_db, stage=None)) == 6


def test_relaxed_duplicates_are_listed_only_on_request(candidates_db, tmp_path):
    from hpc.query import find_candidates

    ranked = find_candidates("qc", coll=candidates_db)
    best, twin = ranked[0]["candidate_id"], ranked[-1]["candidate_id"]  # TaB2 at -0.02 and at 0.12
    candidates_db.update_one({"candidate_id": twin}, {"$set": {"hull.duplicate_of": best}})
    assert [d["e_above_hull"] for d in find_candidates("qc", coll=candidates_db)] == [-0.02, -0.005, 0.01]
    assert len(find_candidates("qc", coll=candidates_db, duplicates=None)) == 4
    assert [d["candidate_id"] for d in find_candidates("qc", coll=candidates_db, duplicates=True)] == [twin]
    as_csv = _cli("qc", "--duplicates", "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = {r["candidate_id"]: r for r in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert len(rows) == 4 and rows[twin]["duplicate_of"] == best and rows[best]["duplicate_of"] == ""


def test_queries_use_an_index(candidates_db):
    """Capture the find command `crystalgen candidates` sends and ask the server how it runs it."""
    from pymongo import MongoClient, monitoring

    from hpc.query import find_candidates

    class Finds(monitoring.CommandListener):
        commands = []

        def started(self, event):
            if event.command_name == "find":
                self.commands.append(dict(event.command))

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    listener = Finds()
    client = MongoClient(os.environ["CRYSTALGEN_MONGODB_URI"], event_listeners=[listener])
    coll = client[candidates_db.database.name][candidates_db.name]
    for kwargs in ({}, {"below_hull": True}, {"max_e_above_hull": 0.1}, {"formula": "TaB2"}, {"spacegroup": 191},
                   {"stage": "relaxed"}):
        find_candidates("qc", coll=coll, **kwargs)
        sent = listener.commands[-1]
        assert sent["filter"]["campaign"] == "qc" and list(sent["sort"]) == ["e_above_hull", "candidate_id"]
        assert sent["hint"]["campaign"] == 1
        plan = coll.find(sent["filter"], hint=sent["hint"]).sort(list(sent["sort"].items())).explain()
        plan = plan["queryPlanner"]["winningPlan"]
        text = json.dumps(plan)
        assert "IXSCAN" in text and "COLLSCAN" not in text, (kwargs, text)
        assert '"keyPattern": {"campaign": 1' in text
    client.close()


def _cli(*args):
    return subprocess.run([*CLI, "candidates", *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))


def test_cli_formats(candidates_db, tmp_path):
    as_csv = _cli("qc", "--max-ehull", "0.05", "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [float(r["e_above_hull"]) for r in rows] == [-0.02, -0.005, 0.01]
    assert rows[0]["formula"] == "TaB2" and rows[0]["below_hull"] == "True"

    cifs = _cli("qc", "--below-hull", "--format", "cif", "--out", str(tmp_path / "cif"))
    assert cifs.returncode == 0, cifs.stderr
    files = sorted((tmp_path / "cif").glob("*.cif"))
    assert [f.name.split("_")[0] for f in files] == ["0001", "0002"]
    assert Structure.from_file(files[0]).composition.reduced_formula == "TaB"  # the stored structure

    table = _cli("qc", "--spg", "191")
    assert table.returncode == 0 and "TaB2" in table.stdout and "-0.0200" in table.stdout


@pytest.mark.parametrize("args, message", [
    (["--stage", "done"], "--stage 'done'"),
    (["--format", "cif"], "--out"),
    (["--formula", "Xx2"], "--formula 'Xx2'"),
])
def test_cli_bad_input(candidates_db, args, message):
    result = _cli("qc", *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["candidates", "nope"], ["resubmit", "nope", "--dry-run"],
                                     ["campaign", "status", "nope"]])
def test_unknown_campaign_is_an_error(candidates_db, command):
    result = subprocess.run([*CLI, *command], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 1
    assert "no campaign 'nope' in this database; campaigns: other, qc" in result.stderr
