"""Rescue of near-miss samples: repairs what is only too close or too small, touches nothing valid, says why not."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.config import CHECKPOINT_DIR
from crystalgen.novelty import matcher
from crystalgen.relax import validate_structure
from crystalgen.rescue import MAX_DISPLACEMENT, MAX_VOLUME_GROWTH, rescue
from crystalgen.sample import Condition, sample_structures
from crystalgen.volume import contact_ratio, expected_volume

from known_helpers import reference


def test_a_valid_structure_is_returned_untouched():
    tab2 = reference("TaB2")
    result = rescue(tab2)
    assert result.structure is tab2 and result.actions == () and not result.rescued
    assert result.description == "valid as generated, not touched"


def test_a_too_small_cell_is_scaled_up_at_most_by_the_growth_bound():
    squeezed = reference("TaB2").copy()
    squeezed.scale_lattice(squeezed.volume * 0.2)  # Ta-B bonds at 0.56 x the covalent-radius sum
    assert "collapsed bond" in validate_structure(squeezed)
    result = rescue(squeezed)
    assert result.rescued and len(result.actions) == 1 and result.actions[0].startswith("volume scaled")
    assert validate_structure(result.structure) is None
    assert result.structure.volume == pytest.approx(min(expected_volume("TaB2"), MAX_VOLUME_GROWTH * squeezed.volume))
    assert matcher().fit(result.structure, reference("TaB2"))  # same arrangement, only the size changed


def _overlapping() -> Structure:
    """Rock-salt TaC at the right volume with one C pushed 0.3 Å from a Ta: only the distance is wrong."""
    structure = Structure.from_spacegroup(225, Lattice.cubic(4.45), ["Ta", "C"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    structure.replace(4, "C", [0.3 / 4.45, 0, 0])
    return structure


def test_overlapping_atoms_are_pushed_apart_within_the_displacement_bound():
    broken = _overlapping()
    assert validate_structure(broken).startswith("overlapping atoms")
    result = rescue(broken)
    assert result.rescued and "repulsive relaxation" in result.description
    repaired = result.structure
    assert validate_structure(repaired) is None and repaired.composition == broken.composition
    assert repaired.lattice == broken.lattice  # the cell was at its expected volume: only atoms moved
    moves = [site.distance(broken[i]) for i, site in enumerate(repaired)]
    assert max(moves) <= MAX_DISPLACEMENT and contact_ratio(repaired) >= 0.6


def test_what_needs_more_than_the_bounds_is_refused_with_a_reason():
    refused = rescue(_overlapping(), max_displacement=0.05)
    assert refused.structure is None and refused.reason.startswith("not repairable within bounds")
    assert "was: overlapping atoms" in refused.reason
    exploded = Structure(Lattice.cubic(12.0), ["W"], [[0, 0, 0]])  # 1728 Å^3/atom: not a distance fault
    result = rescue(exploded)
    assert result.structure is None and "still invalid after repair: cell too large" in result.reason


def test_real_model_samples_of_the_paper_compositions_are_repaired_or_refused_openly():
    """Raw network output (no group imposed) of the shipped demo model: every cell has a distance fault."""
    conditions = [Condition(formula=f, spacegroup=191, formation_energy=-0.5) for f in ("Ta1W1B6", "Ta1W2B5", "Ta2W1B5")]
    samples = sample_structures(CHECKPOINT_DIR / "demo-cfm-n.pt", conditions, samples_per_condition=2, seed=0, steps=20,
                                device="cpu", symmetry="none")
    cells = [s.pymatgen or Structure.from_dict(s.rejected_structure) for s in samples]
    faults = [validate_structure(c) for c in cells]
    assert all(f and f.split(":")[0] in ("overlapping atoms", "collapsed bond") for f in faults), faults
    results = [rescue(c) for c in cells]
    assert sum(r.rescued for r in results) >= 2, [r.reason for r in results]
    for cell, result in zip(cells, results):
        if result.rescued:
            assert validate_structure(result.structure) is None
            assert result.structure.composition == cell.composition
            assert result.structure.volume >= cell.volume * 0.999
        else:
            assert result.reason.startswith("not repairable") and result.structure is None
    assert np.isfinite([contact_ratio(r.structure) for r in results if r.rescued]).all()
