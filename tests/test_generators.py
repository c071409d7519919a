"""Baseline generators (random-symmetric, substitution) and the one entry point for all generators."""

from __future__ import annotations

import itertools

import pytest
from pymatgen.core import Composition
from pymatgen.io.cif import CifWriter

from crystalgen.generators import GENERATORS, generate
from crystalgen.known import KnownStructuresError, cif_structures
from crystalgen.novelty import NoveltyIndex, matcher
from crystalgen.relax import validate_structure
from crystalgen.sample import DEFAULT_CHECKPOINT, Condition, sample_seed
from crystalgen.substitution import element_probability, species_maps
from crystalgen.symmetry import spacegroup_number

from known_helpers import reference, reference_phases


def _condition(formula: str, group: int) -> Condition:
    return Condition(formula=formula, spacegroup=group, formation_energy=-0.5)


def test_random_symmetric_samples_keep_composition_group_and_distances():
    # 187 primitive, 12 centred: PyXtal needs the doubled counts there and the primitive cell comes back
    conditions = [_condition("Ta1W1B6", 187), _condition("Ta1W1B6", 12)]
    samples = generate("random-symmetric", conditions, samples_per_condition=2, seed=3)
    assert [(s.condition.spacegroup, s.sample_index) for s in samples] == [(187, 0), (187, 1), (12, 0), (12, 1)]
    for s in samples:
        structure = s.pymatgen
        assert structure is not None, s.reason
        assert structure.composition == Composition("Ta1W1B6") and len(structure) == 8
        assert spacegroup_number(structure, symprec=0.1) == s.condition.spacegroup
        assert validate_structure(structure) is None
        assert s.method == "random-symmetric" and "pyxtal 1.1.5" in s.origin
        assert s.seed == sample_seed(3, s.condition, s.sample_index)
        # compressed from PyXtal's loose cells toward the expected ~8.5 Å^3/atom, never below it
        assert 8.4 < structure.volume / len(structure) < 16
    again = generate("random-symmetric", conditions[:1], samples_per_condition=2, seed=3)
    assert [s.structure for s in again] == [s.structure for s in samples[:2]]
    other = generate("random-symmetric", conditions[:1], samples_per_condition=1, seed=4)
    assert not matcher().fit(other[0].pymatgen, samples[0].pymatgen)


def test_random_symmetric_impossible_pair_gets_a_reason_and_the_rest_still_runs():
    samples = generate("random-symmetric", [_condition("Ta1W1B6", 229), _condition("Ta1B2", 191)], seed=0)
    impossible, possible = samples
    assert impossible.structure is None
    assert "Ta1W1B6" in impossible.reason and "space group 229" in impossible.reason and "Wyckoff" in impossible.reason
    assert possible.structure is not None and possible.reason == ""


def test_unknown_generator_names_itself_and_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown generator 'gan'.*model, random-symmetric, substitution"):
        generate("gan", [_condition("Ta1B2", 191)])
    with pytest.raises(ValueError, match="samples_per_condition"):
        generate("random-symmetric", [_condition("Ta1B2", 191)], samples_per_condition=0)
    with pytest.raises(ValueError, match="takes no model options"):
        generate("random-symmetric", [_condition("Ta1B2", 191)], steps=3)
    assert GENERATORS == ("model", "random-symmetric", "substitution")


def test_model_generator_delegates_to_the_sampler():
    samples = generate("model", [_condition("Ta1W1B6", 191)], samples_per_condition=2, seed=1, steps=2, device="cpu")
    assert [s.method for s in samples] == ["cfm-n", "cfm-n"] and samples[0].checkpoint.endswith(DEFAULT_CHECKPOINT.name)
    for s in samples:  # a rejected sample keeps its decoded cell for rescue
        assert (s.structure is None) == (s.rejected_structure is not None) or s.reason.startswith("undecodable")


def test_substitution_finds_tab2_from_the_reference_phases_and_novelty_names_it():
    references = reference_phases()
    samples = generate("substitution", [_condition("Ta1B2", 191)], samples_per_condition=2, sources=references)
    found, missing = samples
    assert found.method == "substitution" and "reference:TaB2" in found.origin
    structure = found.pymatgen
    assert spacegroup_number(structure) == 191 and structure.composition == Composition("Ta1B2")
    assert NoveltyIndex(references).match(structure) == "reference:TaB2"
    # W -> Ta in AlB2-type WB2 gives the same crystal: one distinct candidate, and the second sample says so
    assert missing.structure is None and missing.reason.startswith("1 distinct substitution candidate(s) for Ta1B2")


def test_substitution_orders_the_mixed_metal_site_in_supercells():
    references = reference_phases()
    wanted = Composition("Ta1W1B4")
    everything = generate("substitution", [_condition("Ta1W1B4", 191)], samples_per_condition=20,
                          sources=references, match_spacegroup=False)
    made = [s for s in everything if s.structure is not None]
    assert len(made) >= 3, [s.reason for s in everything]
    structures = [s.pymatgen for s in made]
    assert all(s.composition == wanted and len(s) == 6 for s in structures)
    assert any("TaB2" in s.origin and "Ta->Ta1+W1" in s.origin for s in made)
    assert not any(matcher().fit(a, b) for a, b in itertools.combinations(structures, 2))
    # with the group enforced, every sample sits in it, and the others say how many candidates there were
    in_group = generate("substitution", [_condition("Ta1W1B4", 191)], samples_per_condition=3, sources=references)
    for s in in_group:
        assert (s.structure is None and "in space group 191" in s.reason) or spacegroup_number(s.pymatgen) == 191


def test_species_maps_score_with_pymatgen_substitution_probabilities():
    maps = list(species_maps(Composition("TaB2"), Composition("Ta1W1B4"), multiple=2))
    assert [m for m, _ in maps] == [{"B": {"B": 4}, "Ta": {"Ta": 1, "W": 1}}]
    assert maps[0][1] == pytest.approx(element_probability("B", "B") * element_probability("Ta", "Ta") * element_probability("W", "Ta"))
    assert element_probability("Ta", "Nb") > element_probability("Ta", "Al") > 0


def test_substitution_from_a_cif_folder_and_bad_folders(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    CifWriter(reference("TaB2")).write_file(folder / "TaB2.cif")
    CifWriter(reference("WB2_ReB2")).write_file(folder / "WB2.cif")
    known = cif_structures(folder)
    assert [k.label for k in known] == ["cif:TaB2.cif", "cif:WB2.cif"]
    samples = generate("substitution", [_condition("Ta2B4", 194)], sources=known)
    assert samples[0].structure is not None and "cif:WB2.cif" in samples[0].origin
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KnownStructuresError, match=f"CIF folder {empty} holds no .cif files"):
        cif_structures(empty)
    with pytest.raises(KnownStructuresError, match="does not exist"):
        cif_structures(tmp_path / "nowhere")
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a 3\n")
    with pytest.raises(KnownStructuresError, match="broken.cif is not a readable structure"):
        cif_structures(folder)
    with pytest.raises(ValueError, match="sources is empty"):
        generate("substitution", [_condition("Ta2B4", 194)])
