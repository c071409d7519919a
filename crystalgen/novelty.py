"""Which known structure a crystal is, and which crystals of a set are the same one.

Both use pymatgen's ``StructureMatcher`` with the project's tolerances (ltol 0.2, stol 0.3,
angle_tol 5; :data:`crystalgen.metrics.MATCHER_KWARGS`) and compare only structures of the same
reduced formula, so each query costs one ``fit`` per known polymorph of its composition (about 1-2
ms for 8-atom cells), not one per known structure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from crystalgen.known import KnownStructure
from crystalgen.metrics import MATCHER_KWARGS


def matcher() -> StructureMatcher:
    return StructureMatcher(**MATCHER_KWARGS)


class NoveltyIndex:
    """Known structures by reduced formula; :meth:`match` names the one a structure equals.

    Earlier entries win when several match, so put the most telling source first (e.g. reference
    phases before a training set).
    """

    def __init__(self, known: Iterable[KnownStructure]):
        self._by_formula: dict[str, list[KnownStructure]] = defaultdict(list)
        self._size = 0
        for entry in known:
            self._by_formula[entry.formula].append(entry)
            self._size += 1
        self._matcher = matcher()

    def __len__(self) -> int:
        return self._size

    def match(self, structure: Structure) -> str | None:
        """The label of the first known structure that ``structure`` matches, else ``None`` (novel)."""
        for entry in self._by_formula.get(structure.composition.reduced_formula, ()):
            if self._matcher.fit(structure, entry.structure):
                return entry.label
        return None


def first_occurrences(structures: Sequence[Structure | None]) -> list[int | None]:
    """For each structure, the index of the first structure in the list it matches (itself when it is
    the first of its kind); ``None`` for ``None`` entries. Distinct = ``i == result[i]``."""
    sm = matcher()
    seen: dict[str, list[int]] = defaultdict(list)
    result: list[int | None] = []
    for i, structure in enumerate(structures):
        if structure is None:
            result.append(None)
            continue
        bucket = seen[structure.composition.reduced_formula]
        first = next((j for j in bucket if sm.fit(structure, structures[j])), None)
        if first is None:
            bucket.append(i)
            first = i
        result.append(first)
    return result
