"""Failure classification from custodian/FireWorks evidence, and the fix chosen for each class."""

from __future__ import annotations

import json

import pytest

from hpc.errors import ErrorClass, classify, custodian_errors
from hpc.resubmit import plan_fix


def _launch(tmp_path, stacktrace="", files=None):
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    return {"launch_dir": str(tmp_path), "state": "FIZZLED",
            "action": {"stored_data": {"_exception": {"_stacktrace": stacktrace, "_details": None}}}}


def _custodian_json(*error_lists):
    return json.dumps([{"job": {}, "corrections": [{"errors": list(e), "actions": [], "handler": {}}
                                                   for e in error_lists]}])


MAX_CORRECTIONS = "custodian.custodian.MaxCorrectionsPerJobError: Max errors per job reached: 5."


@pytest.mark.parametrize("files, stacktrace, expected", [
    ({"custodian.json": _custodian_json(["zbrent"], ["zbrent"])}, MAX_CORRECTIONS, ErrorClass.ZBRENT),
    ({"custodian.json": _custodian_json(["brmix"])}, MAX_CORRECTIONS, ErrorClass.BRMIX),
    ({"custodian.json": _custodian_json(["zbrent"], ["Unconverged"])}, MAX_CORRECTIONS, ErrorClass.CONVERGENCE),
    ({"custodian.json": _custodian_json(["eddrmm"])}, MAX_CORRECTIONS, ErrorClass.CONVERGENCE),
    ({"FW_job.error": "slurmstepd: error: *** JOB 123 ON nid001 CANCELLED DUE TO TIME LIMIT ***"}, "",
     ErrorClass.WALLTIME),
    ({"std_err.txt": "srun: error: nid002: task 3: Out Of Memory\noom-kill event"}, "", ErrorClass.MEMORY),
    ({}, "Traceback ...\nMemoryError", ErrorClass.MEMORY),
    ({"vasp.out": " BRMIX: very serious problems\n the old and the new charge density differ"}, "",
     ErrorClass.BRMIX),
    ({}, "ValueError: something else entirely", ErrorClass.UNKNOWN),
])
def test_classify(tmp_path, files, stacktrace, expected):
    diagnosis = classify(_launch(tmp_path, stacktrace, files))
    assert diagnosis.error_class is expected, diagnosis


def test_scheduler_output_of_a_rapidfire_block_is_read(tmp_path):
    rocket_dir = tmp_path / "launcher_2026-01-01-00-00-00-000000"
    rocket_dir.mkdir()
    (tmp_path / "crystalgen-cpu-4242.error").write_text("=>> PBS: job killed: walltime 86400 exceeded limit 86400")
    diagnosis = classify({"launch_dir": str(rocket_dir)}, lost=True)
    assert diagnosis.error_class is ErrorClass.WALLTIME and "crystalgen-cpu-4242.error" in diagnosis.evidence


def test_custodian_tags_in_order_and_lost_runs(tmp_path):
    (tmp_path / "custodian.json").write_text(_custodian_json(["brmix"], ["zbrent", "potim"]))
    assert custodian_errors(tmp_path) == ["brmix", "zbrent", "potim"]
    assert classify({"launch_dir": str(tmp_path / "nowhere")}, lost=True).error_class is ErrorClass.LOST
    assert classify(None).error_class is ErrorClass.UNKNOWN


def test_fixes_follow_the_documented_table():
    from hpc.errors import Diagnosis

    def fix(cls, spec=None, incar=None):
        return plan_fix(Diagnosis(cls, ""), spec or {}, incar or {})

    assert fix(ErrorClass.WALLTIME, {"_queueadapter": {"walltime": "1-06:00:00"}}).queueadapter == {"walltime": "60:00:00"}
    assert fix(ErrorClass.LOST).queueadapter == {"walltime": "48:00:00"} and fix(ErrorClass.LOST).restart_from_contcar
    assert fix(ErrorClass.MEMORY, {"_queueadapter": {"mem": "64G"}}).queueadapter == {"mem": "128G"}
    assert fix(ErrorClass.MEMORY, {"_queueadapter": {"nodes": 2}}).queueadapter == {"nodes": 4}
    assert fix(ErrorClass.CONVERGENCE).incar == {"ALGO": "All", "NELM": 200}
    assert fix(ErrorClass.CONVERGENCE, incar={"ALGO": "All"}).incar["ALGO"] == "Damped"  # escalates
    assert fix(ErrorClass.ZBRENT, incar={"EDIFF": 1e-5}).incar == {"IBRION": 1, "POTIM": 0.25, "EDIFF": 1e-6}
    assert fix(ErrorClass.BRMIX).incar == {"IMIX": 1, "AMIX": 0.1, "BMIX": 0.01}
    unknown = fix(ErrorClass.UNKNOWN)
    assert not unknown.incar and not unknown.queueadapter and unknown.describe() == "rerun unchanged"
