"""How dense a cell should be, and how close its atoms are: the two numbers a cheap geometric repair needs.

* :func:`expected_volume` is the sum of elemental volumes (``crystalgen.prototypes.element_volume``),
  without the 0.85 compound factor the prototype builder starts from: on ML-relaxed Ta-W-B borides it
  lands within a few per cent (AlB2-type TaB2: 8.86 Å^3/atom expected, 9.19 relaxed with TensorNet),
  where the shipped model's samples sit near 7 and PyXtal's random cells near 24.
* :func:`contact_ratio` is the closest pair's distance over the sum of the two covalent radii, the
  quantity the relaxer's collapsed-bond check compares with ``MIN_BOND_FRACTION`` (0.6).
* :func:`scale_volume` rescales a cell isotropically. Fractional coordinates stay put, so every
  distance scales by the same factor and the volume at which the closest pair reaches a given
  contact ratio follows in closed form.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Composition, Structure

from crystalgen.prototypes import element_volume
from crystalgen.relax import _covalent_radius

#: the closest pair a repaired or compressed cell keeps, as a fraction of the covalent-radius sum:
#: clear of the relaxer's 0.6 collapse threshold, below real bonds (0.9-1.05 in TaB2)
CONTACT_FRACTION = 0.75
CONTACT_CAP = 2.5  # contact ratios are looked for up to this value


def expected_volume(composition: Composition | str) -> float:
    """Cell volume (Å^3) the composition should roughly have: the sum of its elemental volumes."""
    composition = Composition(composition)
    return float(sum(element_volume(el.symbol) * n for el, n in composition.element_composition.items()))


def contact_ratio(structure: Structure) -> float:
    """Smallest distance / (r_i + r_j) over all pairs, periodic images included, capped at
    ``CONTACT_CAP`` (no pair is closer than that)."""
    radii = np.array([_covalent_radius(site.specie) for site in structure])
    centers, neighbors, _, distances = structure.get_neighbor_list(r=CONTACT_CAP * 2 * float(radii.max()))
    if not len(distances):
        return CONTACT_CAP
    return float(min(CONTACT_CAP, (distances / (radii[centers] + radii[neighbors])).min()))


def scale_volume(structure: Structure, volume: float, min_contact: float = CONTACT_FRACTION) -> Structure:
    """A copy scaled isotropically to ``volume``, or to the smallest volume at which the closest pair
    keeps ``min_contact`` x the covalent-radius sum, whichever is larger."""
    floor = structure.volume * (min_contact / contact_ratio(structure)) ** 3 if min_contact > 0 else 0.0
    scaled = structure.copy()
    scaled.scale_lattice(float(max(volume, floor)))
    return scaled
