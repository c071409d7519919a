"""The VASP path: atomate2 RelaxMaker with the campaign's INCAR, faked with atomate2.utils.testing.vasp.

Reference folders (tests/test_data/vasp, built by build_references.py) hold the inputs our jobs must
write and synthetic outputs that pymatgen/emmet parse like real ones. POSCAR is checked too: both test
structures keep fractional coordinates (0,0,0) and (1/2,1/2,1/2) under relaxation by symmetry. KPOINTS
is not compared, because its mesh follows the MLIP-relaxed lattice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pymatgen.core import Structure
from pymatgen.io.vasp import Incar, Vasprun

from flows import candidates as cands
from flows.conditions import expand_conditions
from flows.makers.relax import vasp_job_name, vasp_reference_job_name

TEST_DATA = Path(__file__).parent / "test_data" / "vasp"
FOLDERS = ["TaW_B2", "TaW_tP2"]
REFERENCE_FOLDERS = {"Ta": "reference_Ta", "W": "reference_W"}
CHECKED_INCAR = ["ENCUT", "EDIFF", "EDIFFG", "GGA"]


def _campaign():
    from test_flows import taw_campaign

    return taw_campaign(name="taw-vasp", samples_per_condition=2, relax={"engine": "vasp"})


def _vasp_energy_per_atom(folder: str) -> float:
    run = Vasprun(TEST_DATA / folder / "outputs" / "vasprun.xml.gz", parse_dos=False, parse_eigen=False)
    return run.final_energy / len(run.final_structure)


@pytest.fixture
def fake_vasp(monkeypatch):
    from atomate2.utils.testing.vasp import monkeypatch_vasp

    patcher = monkeypatch_vasp(monkeypatch, TEST_DATA)
    yield next(patcher)
    next(patcher, None)


def test_vasp_relax_writes_paper_incar_and_hull_ranks_every_candidate(settings, fake_vasp, tmp_path):
    from jobflow import run_locally

    from crystalgen.db import job_store, mongo_client
    from flows.makers import CampaignMaker, mlip_settings
    from flows.references import mlip_references, reference_source

    campaign = _campaign()
    structures = [Structure.from_file(TEST_DATA / f / "inputs" / "POSCAR") for f in FOLDERS]
    db = mongo_client()[settings.database]
    refs = mlip_references(reference_source(campaign), mlip_settings(campaign)[0], db, progress=False)
    (point,) = expand_conditions(campaign.grid, {"TaW": refs.hull_formation_energy("TaW")})
    ids = [cands.candidate_id(campaign.name, point.as_dict(), k, campaign.seed) for k in range(2)]
    check = {"incar_settings": CHECKED_INCAR, "check_inputs": ["incar", "poscar", "potcar"], "clear_inputs": False}
    names = {vasp_job_name(cid): folder for cid, folder in zip(ids, FOLDERS, strict=True)}
    names |= {vasp_reference_job_name(phase): folder for phase, folder in REFERENCE_FOLDERS.items()}
    fake_vasp(names, dict.fromkeys(names, check))

    flow = CampaignMaker(structures={"TaW": [s.as_dict() for s in structures]}).make(campaign)
    run_locally(flow, store=job_store(), create_folders=True, root_dir=tmp_path, ensure_success=True)

    incars = [Incar.from_file(p) for p in tmp_path.glob("job_*/INCAR*")]
    assert len(incars) == 4  # two candidates, two reference phases (recomputed with the same INCAR)
    for incar in incars:
        assert incar["ENCUT"] == 500 and incar["EDIFF"] == pytest.approx(1e-5) and incar["EDIFFG"] == pytest.approx(-0.01)
        assert incar["GGA"].upper() == "PE"
    coll = cands.collection()
    refs = {phase: _vasp_energy_per_atom(folder) for phase, folder in REFERENCE_FOLDERS.items()}
    docs = cands.get(coll, ids)
    assert {d.stage for d in docs.values()} == {"hull"}
    for cid, folder in zip(ids, FOLDERS, strict=True):
        doc = docs[cid]
        assert doc.relax.engine == "vasp" and doc.relax.is_dft is True
        assert doc.relax.incar["ENCUT"] == 500
        energy = _vasp_energy_per_atom(folder)
        assert doc.relax.energy_per_atom == pytest.approx(energy, abs=1e-6)
        assert doc.e_above_hull == pytest.approx(energy - (refs["Ta"] + refs["W"]) / 2, abs=1e-6)
        assert doc.hull.energy_source["ENCUT"] == 500.0


def test_written_incar_fails_fake_vasp_when_settings_differ(settings, fake_vasp, tmp_path, caplog):
    """The INCAR check is live: a campaign with ENCUT 520 does not match the 500 eV reference folder."""
    from jobflow import run_locally

    from test_flows import taw_campaign

    from crystalgen.db import job_store
    from flows.makers import stage_makers

    campaign = taw_campaign(relax={"engine": "vasp", "incar": {"ENCUT": 520}})
    structure = Structure.from_file(TEST_DATA / "TaW_B2" / "inputs" / "POSCAR")
    job = stage_makers(campaign).relax.vasp.make(structure)
    job.name = "vasp relax probe"
    fake_vasp({"vasp relax probe": "TaW_B2"}, {"vasp relax probe": {"incar_settings": CHECKED_INCAR,
                                                                       "check_inputs": ["incar"]}})
    responses = run_locally(job, store=job_store(), create_folders=True, root_dir=tmp_path)
    assert job.uuid not in responses or not responses[job.uuid]
    assert "INCAR value of ENCUT is inconsistent: expected 500" in caplog.text and "got 520" in caplog.text
