"""The ``random-symmetric`` baseline: PyXtal's random crystals for the condition's composition and group.

AIRSS-style: atoms on randomly chosen Wyckoff positions of the requested space group, in a random
lattice of that group. Choices made here, each for a reason:

* **Cell:** PyXtal counts atoms in the conventional cell, so the condition's cell formula is read
  as the primitive cell first (:func:`crystalgen.wyckoff.conventional_counts`) and the primitive
  cell of PyXtal's crystal is returned, with exactly the condition's sites.
* **Distances:** PyXtal keeps atoms 0.5 x the covalent-radius sum apart; ``t_factor`` raises that to
  :data:`~crystalgen.volume.CONTACT_FRACTION` (0.75), so no sample trips the relaxer's
  collapsed-bond check (0.6).
* **Volume:** PyXtal draws each cell's volume between covalent-sphere and van der Waals-sphere
  volumes, about 24 Å^3/atom for Ta-W-B borides (which relax to ~9). Its ``factor`` is set so that
  the mean draw is ``VOLUME_SLACK`` x :func:`~crystalgen.volume.expected_volume`, and the cell is
  then compressed toward the expected volume, stopping where the closest pair reaches the same 0.75
  contact (Ta1W1B6 in six groups: 8.5-12.9 Å^3/atom, median 9.6).
* **Seeds:** every sample gets its own ``numpy.random.Generator`` seeded by
  :func:`crystalgen.sample.sample_seed` and passed as PyXtal's ``random_state``, which all of
  PyXtal's draws use: samples are reproducible and independent of numpy's global state.
* **Impossible pairs** (a composition the group's Wyckoff positions cannot hold, or no arrangement
  after PyXtal's attempts) give ``structure=None`` with the reason, per condition.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from importlib.metadata import version

import numpy as np
from pymatgen.core import Composition, Structure

from crystalgen.sample import Condition, GeneratedSample, sample_seed
from crystalgen.volume import CONTACT_FRACTION, expected_volume, scale_volume
from crystalgen.wyckoff import conventional_counts

NAME = "random-symmetric"
PYXTAL_TOLERANCE = 0.5  # PyXtal's atomic tolerance: this fraction of the covalent-radius sum
VOLUME_SLACK = 1.3  # PyXtal's mean cell volume over the expected one: room to place atoms at 0.75 contact
MAX_ATTEMPTS = 10  # PyXtal's own retries before it gives up on a sample


class NoRandomCrystal(ValueError):
    """PyXtal cannot build a crystal for this composition and space group."""


def random_crystal(formula: str, spacegroup: int, rng: np.random.Generator) -> tuple[Structure, str]:
    """One random crystal with the cell ``formula`` in ``spacegroup`` and a note on how it was built."""
    from pyxtal import pyxtal

    composition = Composition(formula)
    counts = conventional_counts(formula, spacegroup)
    if counts is None:
        raise NoRandomCrystal(f"{formula} does not fit the Wyckoff positions of space group {spacegroup}, "
                              "as primitive or as conventional cell")
    species = [el.symbol for el in composition.elements]
    crystal = pyxtal()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            crystal.from_random(3, int(spacegroup), species, list(counts), factor=_volume_factor(species, counts),
                                t_factor=CONTACT_FRACTION / PYXTAL_TOLERANCE, max_count=MAX_ATTEMPTS, random_state=rng)
    except RuntimeError as exc:  # PyXtal: no arrangement within max_count attempts
        raise NoRandomCrystal(f"PyXtal placed no {formula} in space group {spacegroup} in {MAX_ATTEMPTS} attempts "
                              f"({exc})") from None
    conventional = crystal.to_pymatgen()
    structure = _cell_of(conventional, int(composition.num_atoms))
    before = structure.volume / len(structure)
    structure = scale_volume(structure, expected_volume(composition))
    cell = "its primitive cell" if len(conventional) > len(structure) else "the conventional cell"
    note = (f"pyxtal {version('pyxtal')} from_random: space group {spacegroup}, conventional cell "
            f"{'+'.join(f'{s}{n}' for s, n in zip(species, counts))}, {cell} kept; "
            f"volume {before:.2f} -> {structure.volume / len(structure):.2f} Å^3/atom")
    return structure, note


def _volume_factor(species: list[str], counts: Sequence[int]) -> float:
    """PyXtal's ``factor`` that puts its mean cell volume at ``VOLUME_SLACK`` x the expected volume.

    PyXtal draws each element's volume uniformly between its covalent and its van der Waals sphere.
    """
    from pyxtal.database.element import Element

    sphere = lambda r: 4 / 3 * np.pi * r**3  # noqa: E731
    mean = sum(n * (sphere(Element(s).covalent_radius) + sphere(Element(s).vdw_radius)) / 2 for s, n in zip(species, counts))
    return VOLUME_SLACK * expected_volume(Composition(dict(zip(species, counts)))) / mean


def _cell_of(conventional: Structure, n_sites: int) -> Structure:
    """The condition's cell of PyXtal's crystal: the conventional cell when it has the condition's
    sites, else its primitive cell (repeated when the crystal has more translations than its group)."""
    if len(conventional) == n_sites:
        return conventional
    primitive = conventional.get_primitive_structure(tolerance=0.01)
    if len(primitive) < n_sites and n_sites % len(primitive) == 0:
        primitive.make_supercell([n_sites // len(primitive), 1, 1])
    if len(primitive) != n_sites:
        raise NoRandomCrystal(f"PyXtal's crystal reduces to {len(primitive)} sites, not the {n_sites} of the condition")
    return primitive


def random_symmetric(conditions: Sequence[Condition], samples_per_condition: int = 1, seed: int = 0) -> list[GeneratedSample]:
    """``samples_per_condition`` random crystals per condition, in condition order; deterministic per
    (seed, condition, sample index)."""
    samples = []
    for condition in conditions:
        for k in range(samples_per_condition):
            sample_rng_seed = sample_seed(seed, condition, k)
            fields = {"structure": None, "reason": "", "origin": ""}
            try:
                structure, fields["origin"] = random_crystal(condition.formula, condition.spacegroup,
                                                             np.random.default_rng(sample_rng_seed))
                fields["structure"] = structure.as_dict()
            except NoRandomCrystal as exc:
                fields["reason"] = str(exc)
            samples.append(GeneratedSample(condition=condition, sample_index=k, seed=sample_rng_seed, method=NAME,
                                           steps=0, checkpoint="", **fields))
    return samples
