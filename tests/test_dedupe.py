"""StructureIndex finds the twins a scan over every kept structure finds, without that scan."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure
from structure_helpers import distinct_crystals, exhaustive_twins, near_duplicate, with_twins

from flows.dedupe import LATTICE_TOLERANCE, StructureIndex, lattice_signature, shape_signature


def _index_twins(structures):
    index, twins = StructureIndex(), {}
    for cid, structure in structures:
        twins[cid] = index.twin_of(structure)
        if twins[cid] is None:
            index.add(cid, structure)
    return twins, index


def test_same_twins_as_exhaustive_matching_on_500_structures():
    rng = np.random.default_rng(2026)
    family = []
    for formula in ("TaWB6", "TaB2", "WB4", "Ta2WB4", "TaW2B2"):
        family += with_twins(distinct_crystals(formula, 20, rng), rng, prefix=f"{formula}-")
    family = [family[i] for i in rng.permutation(len(family))]
    assert len(family) == 500

    expected = exhaustive_twins(family)
    found, index = _index_twins(family)

    assert found == expected
    # the set is what it should be: every crystal's other cell, supercell and noisy copies are twins of
    # its first-seen member, and no two crystals are
    crystal = {cid: cid.rsplit("-", 1)[0] for cid, _ in family}
    assert sum(twin is not None for twin in expected.values()) == 400
    assert all(crystal[twin] == crystal[cid] for cid, twin in expected.items() if twin)
    assert len(index) == 100
    # and no scan: a few StructureMatcher.fit calls per structure, not one per kept structure
    assert index.fits < 2 * len(family)


def test_signatures_ignore_cell_choice_and_scale_but_not_distortion():
    rng = np.random.default_rng(1)
    tab2 = Structure(Lattice.hexagonal(3.1, 3.3), ["Ta", "B", "B"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]])
    other = tab2.copy()
    other.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 1]])  # another basis of the same lattice
    other.translate_sites(range(len(other)), [0.3, 0.1, 0.2])
    other.scale_lattice(tab2.volume * 1.3)
    assert np.allclose(lattice_signature(tab2), lattice_signature(other))
    assert np.allclose(shape_signature(tab2), shape_signature(other))

    squashed = Structure(Lattice.hexagonal(3.1, 2.7), tab2.species, tab2.frac_coords)  # c/a 18% lower
    assert np.abs(lattice_signature(squashed) - lattice_signature(tab2)).max() > LATTICE_TOLERANCE

    noisy = near_duplicate(tab2, rng, displacement=0.05, strain=0.0, volume_change=0.0)
    assert 0 < np.abs(shape_signature(noisy) - shape_signature(tab2)).max() <= 2 * 0.05 / (tab2.volume / 3) ** (1 / 3)


def test_twin_of_compares_only_structures_of_the_same_reduced_cell():
    index = StructureIndex()
    tab2 = Structure(Lattice.hexagonal(3.1, 3.3), ["Ta", "B", "B"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]])
    index.add("tab2", tab2)
    tab = Structure(Lattice.cubic(3.0), ["Ta", "B"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert index.twin_of(tab) is None and index.fits == 0
    supercell = tab2.copy()
    supercell.make_supercell([2, 1, 1])
    assert index.twin_of(supercell) == "tab2" and index.fits == 1
    assert len(index) == 1
