"""Hull ranking: e_above_hull per chemical system, and refusal to mix energy sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from flows import energies
from flows.hull import EnergySourceMismatch, check_sources, e_above_hull, plot_hull
from flows.references import ReferenceError, ReferenceSet

TEST_DATA = Path(__file__).parent / "test_data" / "vasp"
PBE500 = energies.vasp_source({"ENCUT": 500, "GGA": "PE"})

# made-up but self-consistent energies (eV/atom)
E = {"Ta": -11.8, "W": -12.9, "B": -6.7, "TaB2": -9.5, "WB2": -9.0}


def refs(source=PBE500, names=("Ta", "W", "B", "TaB2", "WB2")) -> ReferenceSet:
    return ReferenceSet([{"name": n, "formula": n, "energy_per_atom": E[n]} for n in names], source, "test refs")


def test_e_above_hull_per_chemical_system_with_decomposition():
    form_tab2 = E["TaB2"] - (E["Ta"] + 2 * E["B"]) / 3  # formation energy of the TaB2 reference
    candidates = [
        ("on-tie-line", "TaB2", E["TaB2"] + 0.05),  # 50 meV above the TaB2 reference
        ("below", "TaB2", E["TaB2"] - 0.02),
        ("ternary", "TaWB4", (E["TaB2"] * 3 + E["WB2"] * 3) / 6 + 0.1),
        ("binary-TaW", "TaW", (E["Ta"] + E["W"]) / 2 - 0.03),
    ]
    results = e_above_hull(candidates, refs())
    assert results["on-tie-line"].e_above_hull == pytest.approx(0.05)
    assert results["below"].e_above_hull == pytest.approx(-0.02) and results["below"].below_hull
    assert not results["on-tie-line"].below_hull
    assert results["ternary"].e_above_hull == pytest.approx(0.1)
    assert results["ternary"].chemsys == "B-Ta-W"
    assert set(results["ternary"].decomposition) == {"TaB2 (TaB2)", "WB2 (B2W)"}  # pymatgen writes reduced formulas by electronegativity
    assert sum(results["ternary"].decomposition.values()) == pytest.approx(1.0)
    assert results["binary-TaW"].e_above_hull == pytest.approx(-0.03) and results["binary-TaW"].chemsys == "Ta-W"
    assert refs().hull_formation_energy("TaB2") == pytest.approx(form_tab2)


def test_missing_elemental_reference_is_named():
    with pytest.raises(ReferenceError, match="no elemental phase for B"):
        e_above_hull([("c", "TaB2", -9.0)], refs(names=("Ta", "W", "TaB2")))


@pytest.mark.parametrize(
    ("candidate_source", "reference_source", "field"),
    [
        (energies.mlip_source("TensorNet-MatPES-PBE-v2025.1-PES"), PBE500, "engine"),
        (PBE500, energies.MATERIALS_PROJECT_SOURCE, "ENCUT"),
        (energies.mlip_source("TensorNet-MatPES-PBE-v2025.1-PES"), energies.mlip_source("CHGNet-0.3.0"), "potential"),
        (energies.vasp_source({"ENCUT": 500, "GGA": "PS"}), PBE500, "GGA"),
    ],
)
def test_mixing_energy_sources_is_refused_unless_a_scheme_is_named(candidate_source, reference_source, field):
    with pytest.raises(EnergySourceMismatch, match=field):
        check_sources([candidate_source], refs(reference_source), compatibility=None)
    warnings = check_sources([candidate_source], refs(reference_source), compatibility="my-accepted-scheme")
    assert len(warnings) == 1 and "my-accepted-scheme" in warnings[0] and field in warnings[0]
    assert check_sources([reference_source], refs(reference_source), compatibility=None) == []


def test_hull_job_refuses_mlip_energies_on_a_dft_hull(settings):
    """A vasp campaign with file references (declared PBE/500) and candidates relaxed by the MLIP."""
    from jobflow import run_locally

    from flow_helpers import candidate_doc

    from crystalgen.db import job_store
    from flows import candidates as cands
    from flows.campaign import parse_campaign
    from flows.makers import stage_makers

    campaign = parse_campaign({
        "name": "mixed", "compositions": ["TaW"], "spacegroups": [221], "energy_grid": {"count": 1},
        "relax": {"engine": "vasp"}, "references": {"file": str(TEST_DATA / "references.json"), "recompute": False},
    })
    coll = cands.collection()
    doc = candidate_doc("mixed", "TaW", 221, 0.0)
    cands.insert_generated(coll, [doc])
    cands.set_stage(coll, doc.candidate_id, "relaxed", {"relax": {
        "engine": "mlip", "is_dft": False, "energy_per_atom": -12.4, "energy_source": energies.mlip_source("TensorNet")}})
    job = stage_makers(campaign).hull.make()
    responses = run_locally(job, store=job_store(), log=False)
    assert not responses.get(job.uuid)
    stored = cands.get(coll, [doc.candidate_id])[doc.candidate_id]
    assert stored.stage == "relaxed" and stored.e_above_hull is None


def test_hull_plot_is_written(tmp_path):
    path = tmp_path / "hull.png"
    plot_hull(refs(), [("x", "TaWB4", -9.3)], {"Ta", "W", "B"}, path)
    assert path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_candidates_that_relax_into_the_same_crystal_are_ranked_once():
    from flows.dedupe import relaxed_duplicates

    tab2 = Structure(Lattice.hexagonal(3.1, 3.3), ["Ta", "B", "B"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]])
    shifted_supercell = tab2.copy()
    shifted_supercell.translate_sites(range(3), [0.1, 0.2, 0.3])
    shifted_supercell.make_supercell([1, 1, 2])
    other_polymorph = Structure(Lattice.hexagonal(3.1, 6.6), ["Ta", "B", "B"], [[0, 0, 0], [1 / 3, 2 / 3, 0.1], [2 / 3, 1 / 3, 0.4]])
    tab = Structure(Lattice.cubic(3.0), ["Ta", "B"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    docs = [("a", tab2), ("b", shifted_supercell), ("c", other_polymorph), ("d", tab), ("e", tab2)]
    e_above_hull = {"a": 0.05, "b": 0.02, "c": 0.01, "d": 0.3, "e": 0.02}
    # b is the best of the TaB2 twins (ties broken by id: b before e); c and d are distinct crystals
    assert relaxed_duplicates(docs, e_above_hull) == {"a": "b", "e": "b"}
