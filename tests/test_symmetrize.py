"""Imposing the requested space group: standard frames, projection, Wyckoff construction, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.data.dataset import read_dataset
from crystalgen.relax import validate_structure
from crystalgen.symmetrize import (
    compatible,
    conventional_counts,
    project_onto_group,
    spacegroup_of,
    symmetrize,
    wyckoff_structure,
)
from crystalgen.symmetry import standard_primitive, standard_setting

DATASET = "crystalgen/assets/datasets/aflow_prototypes_tensornet.jsonl.gz"


@pytest.fixture(scope="module")
def crystals() -> dict[int, Structure]:
    """One real relaxed crystal per space group, several cell centrings among them."""
    from pathlib import Path

    _, records = read_dataset(Path(__file__).resolve().parents[1] / DATASET)
    wanted = {191: None, 194: None, 63: None, 139: None, 225: None, 166: None, 12: None, 62: None, 71: None}
    for record in records:
        if record.spacegroup in wanted and wanted[record.spacegroup] is None and record.nsites >= 3:
            wanted[record.spacegroup] = record.pymatgen
    return {number: s for number, s in wanted.items() if s is not None}


def _shaken(structure: Structure, distance: float, seed: int) -> Structure:
    """Every atom moved by ``distance`` Å in a seeded random direction, the cell strained by ~2 %."""
    rng = np.random.default_rng(seed)
    moves = rng.normal(size=(len(structure), 3))
    moves *= distance / np.linalg.norm(moves, axis=1, keepdims=True)
    strain = np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3))
    return Structure(Lattice(structure.lattice.matrix @ strain), structure.species, structure.cart_coords @ strain + moves,
                     coords_are_cartesian=True)


def test_standard_primitive_keeps_the_group_and_gives_one_frame_per_group(crystals):
    for number, structure in crystals.items():
        standard, found = standard_primitive(structure)
        assert found == number
        again, _ = standard_primitive(standard.copy())
        np.testing.assert_allclose(again.lattice.abc, standard.lattice.abc, atol=1e-6)
        _, _, to_primitive = standard_setting(number)
        # a conventional cell holds 1/det(P) primitive cells
        assert len(conventional_counts([s.specie.symbol for s in standard], number)) >= 1
        assert round(1 / abs(np.linalg.det(to_primitive))) * len(standard) == sum(
            conventional_counts([s.specie.symbol for s in standard], number).values())


@pytest.mark.parametrize("distance", [0.1, 0.3])
def test_projection_restores_the_group_of_a_shaken_crystal(crystals, distance):
    for number, structure in crystals.items():
        standard, _ = standard_primitive(structure)
        shaken = _shaken(standard, distance, seed=number)
        assert spacegroup_of(shaken) != number  # the noise really broke the symmetry
        result = project_onto_group(shaken, number)
        assert result.structure is not None, f"{number}: {result.reason}"
        assert spacegroup_of(result.structure, 1e-3) == number
        assert result.displacement < 2 * distance + 0.1
        assert len(result.structure) == len(standard)


def test_projection_of_a_random_cell_fails_with_a_reason():
    rng = np.random.default_rng(3)
    cloud = Structure(Lattice.cubic(4.0), ["Ta", "W"] + ["B"] * 6, rng.random((8, 3)))
    result = project_onto_group(cloud, 221)
    assert result.structure is None and any(word in result.reason for word in ("merged", "not 221", "moved an atom"))


def test_wyckoff_construction_holds_the_group_is_seeded_and_valid():
    rng = np.random.default_rng(0)
    sample = Structure(Lattice.hexagonal(3.0, 6.6), ["Ta", "W"] + ["B"] * 6, rng.random((8, 3)))
    for number in (191, 187, 12, 65, 166):
        first = wyckoff_structure(sample, number, seed=11)
        again = wyckoff_structure(sample, number, seed=11)
        assert first.structure is not None, first.reason
        assert spacegroup_of(first.structure, 0.01) == number
        assert validate_structure(first.structure) is None
        assert first.structure.volume >= sample.volume * 0.999  # the model's volume, or more for bonds
        np.testing.assert_allclose(first.structure.frac_coords, again.structure.frac_coords)
        assert first.structure.composition == sample.composition


@pytest.mark.timeout(60)
def test_wyckoff_construction_in_a_too_dense_sample_cell_is_quick():
    """A real Ta1W1B6 sample of the shipped model (7.9 A^3/atom, rejected for colliding atoms): PyXtal
    searched its cell for 456 s; placed in the cell shape with room it takes well under a second."""
    from pathlib import Path

    sample = Structure.from_file(Path(__file__).parent / "test_data" / "dense_tawb6_p6mmm_sample.json")
    result = wyckoff_structure(sample, 191, seed=2052)
    assert result.structure is not None and spacegroup_of(result.structure, 0.01) == 191
    assert validate_structure(result.structure) is None
    assert result.structure.volume >= sample.volume * 0.999


def test_incompatible_composition_falls_back_to_p1():
    # one Ta in Pnma (all positions have 4 copies) cannot hold the group
    assert not compatible(["Ta", "W"] + ["B"] * 6, 62) and compatible(["Ta", "W"] + ["B"] * 6, 191)
    rng = np.random.default_rng(1)
    sample = Structure(Lattice.cubic(4.2), ["Ta", "W"] + ["B"] * 6, rng.random((8, 3)))
    result = symmetrize(sample, 62, "project-or-wyckoff", seed=2)
    assert result.structure is not None and validate_structure(result.structure) is None
    assert result.spacegroup == 1 or spacegroup_of(result.structure) != 62


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="symmetry mode"):
        symmetrize(Structure(Lattice.cubic(3), ["W"], [[0, 0, 0]]), 229, "magic")


def test_a_model_trained_in_standard_cells_samples_the_requested_groups(tmp_path):
    """End to end: standard-primitive training data, then every valid sample holds its requested group."""
    from crystalgen.checkpoint import load_method
    from crystalgen.sample import Condition, default_symmetry, sample_structures
    from crystalgen.train import train

    from model_helpers import tiny_config, write_tiny_dataset

    dataset = write_tiny_dataset(tmp_path / "tiny.jsonl.gz", n_perov=24)
    checkpoint = train(tiny_config(dataset, tmp_path / "run", max_steps=2, data__frame="standard-primitive"),
                       progress=False, log=lambda _: None)
    assert default_symmetry(load_method(checkpoint).config) == "project-or-wyckoff"
    conditions = [Condition(formula="SrTiO3", spacegroup=g, formation_energy=-0.3) for g in (221, 99, 123, 25)]
    samples = sample_structures(checkpoint, conditions, samples_per_condition=2, seed=4)
    again = sample_structures(checkpoint, conditions, samples_per_condition=2, seed=4)
    assert [s.structure for s in samples] == [s.structure for s in again]
    valid = [s for s in samples if s.valid]
    assert len(valid) >= 6
    for sample in valid:
        assert sample.symmetry in ("project", "wyckoff")
        assert spacegroup_of(sample.pymatgen, 0.01) == sample.condition.spacegroup
        assert validate_structure(sample.pymatgen) is None
    raw = sample_structures(checkpoint, conditions, samples_per_condition=2, seed=4, symmetry="none")
    assert all(s.symmetry == "none" for s in raw)
    with pytest.raises(ValueError, match="symmetry must be one of"):
        sample_structures(checkpoint, conditions[:1], symmetry="sideways")
