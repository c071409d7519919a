"""Finding structures that are the same crystal (pymatgen StructureMatcher), for selection and ranking.

Comparing a new structure with every kept one of its formula is quadratic: ``StructureMatcher().fit``
costs 2-12 ms per pair of 8-atom cells, most of it re-reducing both cells. ``StructureIndex`` reduces
each structure once and runs ``fit`` only against kept structures that pass three filters:

1. **Composition of the reduced cell** (exact). ``fit`` reduces both inputs to Niggli-reduced primitive
   cells and needs the same species on the same number of sites, so no twin has another key.
2. **Lattice.** The lattice's successive minima (its three shortest independent translations) over
   V^(1/3): the same for every cell of the lattice, scale-free like the matcher (``scale=True``
   compares cells brought to equal volume, so a volume bin would split twins), and a strain of e
   changes each by about e. Compared when every ln-ratio is within ``LATTICE_TOLERANCE``; the
   shortest one, kept sorted, gives the window of kept structures to look at.
3. **Local shape.** Per species, the sorted distances from its sites to their ``NEIGHBOURS`` nearest
   neighbours and to the nearest site of each species, over (V/n)^(1/3): invariant to cell choice,
   origin, site order, supercells and scale; moving sites by at most d changes each entry by at most
   2d. Compared when every entry is within ``SHAPE_TOLERANCE``.

Filters 2 and 3 are heuristics with a stated reach: twins that differ by cell choice, supercell,
origin or site order, and near-duplicates up to ~5% strain and ~0.2 Å of site noise (on 8-10
Å^3/atom cells), are always compared, so the first-added twin is the one a scan over all kept
structures returns (tests/test_dedupe.py checks this against that scan). What they leave out are pairs
of *different* crystals that StructureMatcher's loose defaults still accept (lattices up to 20% apart,
sites up to 0.3 (V/n)^(1/3)): selection may then relax both, and the ranking lists both.
benchmarks/dedupe.py counts those and measures the speed.

No symmetry key: space groups are found with a tolerance, so a noisy copy of a symmetric cell often
comes out with another group (P1 even at symprec 0.3) while StructureMatcher still pairs it with the
symmetric one. On benchmarks/dedupe.py's 600 cells, 194 of the 483 twins a full scan finds have
different space-group + Wyckoff-multiplicity keys (spglib, symprec 0.1): a bucket by that key would
lose 40% of them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

#: largest |ln ratio| of any successive minimum (over V^(1/3)) between structures still compared
LATTICE_TOLERANCE = 0.05
#: largest difference of any shape entry, in units of (V/n)^(1/3), between structures still compared
SHAPE_TOLERANCE = 0.2
#: nearest neighbours (any species) per site in the shape signature
NEIGHBOURS = 6


@dataclass
class _Entry:
    order: int
    candidate_id: str
    reduced: Structure
    lattice: np.ndarray
    shape: np.ndarray


@dataclass
class _Shelf:
    """Kept structures of one reduced-cell composition, sorted by their shortest lattice translation."""

    keys: list[tuple[float, int]] = field(default_factory=list)
    entries: dict[int, _Entry] = field(default_factory=dict)

    def add(self, entry: _Entry) -> None:
        insort(self.keys, (float(entry.lattice[0]), entry.order))
        self.entries[entry.order] = entry

    def near(self, lattice: np.ndarray, shape: np.ndarray) -> list[_Entry]:
        """Entries within the tolerances of both signatures, in the order they were added."""
        lo = bisect_left(self.keys, (lattice[0] - LATTICE_TOLERANCE, -1))
        hi = bisect_right(self.keys, (lattice[0] + LATTICE_TOLERANCE, float("inf")))
        window = [self.entries[order] for _, order in self.keys[lo:hi]]
        if not window:
            return []
        close = ((np.abs(np.stack([e.lattice for e in window]) - lattice).max(axis=1) <= LATTICE_TOLERANCE)
                 & (np.abs(np.stack([e.shape for e in window]) - shape).max(axis=1) <= SHAPE_TOLERANCE))
        return sorted((e for e, ok in zip(window, close, strict=True) if ok), key=lambda e: e.order)


@dataclass
class _Analysis:
    structure: Structure
    composition: tuple
    reduced: Structure
    lattice: np.ndarray
    shape: np.ndarray


class StructureIndex:
    """Structures kept so far, to find a StructureMatcher twin of a new one without comparing it with all.

    ``twin_of`` returns what ``StructureMatcher().fit(kept, new)`` over every kept structure in the
    order added would (the first-added twin), within the reach stated in the module docstring.
    """

    def __init__(self) -> None:
        from pymatgen.analysis.structure_matcher import StructureMatcher

        self._matcher = StructureMatcher()
        self._shelves: dict[tuple, _Shelf] = {}
        self._count = 0
        self._last: _Analysis | None = None
        self.fits = 0  # StructureMatcher.fit calls made (benchmarks report it)

    def twin_of(self, structure: Structure) -> str | None:
        """The id of a kept structure StructureMatcher finds equal to ``structure`` (first added wins)."""
        new = self._analyse(structure)
        shelf = self._shelves.get(new.composition)
        for entry in shelf.near(new.lattice, new.shape) if shelf else []:
            self.fits += 1
            if self._matcher.fit(entry.reduced, new.reduced, skip_structure_reduction=True):
                return entry.candidate_id
        return None

    def add(self, candidate_id: str, structure: Structure) -> None:
        new = self._analyse(structure)
        self._shelves.setdefault(new.composition, _Shelf()).add(
            _Entry(self._count, candidate_id, new.reduced, new.lattice, new.shape))
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def _analyse(self, structure: Structure) -> _Analysis:
        # selection asks twin_of, then adds the same object: analyse it once
        if self._last is not None and self._last.structure is structure:
            return self._last
        # the reduction fit() applies to each input (Niggli cell, then primitive), done once here;
        # fit(..., skip_structure_reduction=True) then compares exactly what fit() alone would
        reduced = self._matcher._get_reduced_structure(Structure.from_sites(structure), primitive_cell=True,
                                                        niggli=True)
        composition = tuple(sorted((str(sp), amount) for sp, amount in reduced.composition.items()))
        self._last = _Analysis(structure, composition, reduced, lattice_signature(reduced), shape_signature(reduced))
        return self._last


def lattice_signature(structure: Structure) -> np.ndarray:
    """ln of the lattice's successive minima over V^(1/3), shortest first."""
    matrix = structure.lattice.get_niggli_reduced_lattice().matrix
    steps = np.array(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij")).reshape(3, -1).T
    vectors = steps[np.any(steps != 0, axis=1)] @ matrix
    lengths = np.linalg.norm(vectors, axis=1)
    minima: list[np.ndarray] = []
    for i in np.argsort(lengths, kind="stable"):
        if np.linalg.matrix_rank(np.array([*minima, vectors[i]]), tol=1e-8 * lengths[i]) > len(minima):
            minima.append(vectors[i])
            if len(minima) == 3:
                break
    return np.log(np.linalg.norm(minima, axis=1) / structure.volume ** (1 / 3))


def shape_signature(structure: Structure) -> np.ndarray:
    """Per species (sorted by name), column by column: the sorted distances of its sites to their k-th
    nearest neighbour (k = 1..NEIGHBOURS) and to the nearest site of each species, over (V/n)^(1/3)."""
    n = len(structure)
    unit = (structure.volume / n) ** (1 / 3)
    names = [site.species_string for site in structure]
    kinds = sorted(set(names))
    code = np.array([kinds.index(name) for name in names])
    radius = 2.5 * unit
    while True:
        centres, neighbours, _, distances = structure.get_neighbor_list(radius)
        nearest = np.full((n, len(kinds)), np.inf)
        np.minimum.at(nearest, (centres, code[neighbours]), distances)
        if np.bincount(centres, minlength=n).min() >= NEIGHBOURS and np.isfinite(nearest).all():
            break
        radius *= 1.5
    order = np.lexsort((distances, centres))
    first = np.searchsorted(centres[order], np.arange(n))
    shells = distances[order][first[:, None] + np.arange(NEIGHBOURS)]
    features = np.hstack([shells, nearest])
    return np.concatenate([np.sort(features[code == k], axis=0).T.ravel() for k in range(len(kinds))]) / unit


def relaxed_duplicates(structures: Iterable[tuple[str, Structure]], e_above_hull: dict[str, float]) -> dict[str, str]:
    """``{candidate_id: id of the better twin}`` for candidates whose structure StructureMatcher finds
    equal to one with a lower (or equal, then smaller id) e_above_hull.

    Selection dedupes pre-relaxed structures; different ones can still relax into the same crystal,
    which the ranking should list once.
    """
    index, twins = StructureIndex(), {}
    for cid, structure in sorted(structures, key=lambda item: (e_above_hull[item[0]], item[0])):
        if (twin := index.twin_of(structure)) is None:
            index.add(cid, structure)
        else:
            twins[cid] = twin
    return twins
