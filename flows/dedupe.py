"""Finding structures that are the same crystal (pymatgen StructureMatcher), for selection and ranking."""

from __future__ import annotations

from collections.abc import Iterable

from pymatgen.core import Structure


class StructureIndex:
    """Structures kept so far, by reduced formula, to find a StructureMatcher twin of a new one."""

    def __init__(self) -> None:
        from pymatgen.analysis.structure_matcher import StructureMatcher

        self._matcher = StructureMatcher()
        self._by_formula: dict[str, list[tuple[str, Structure]]] = {}

    def twin_of(self, structure: Structure) -> str | None:
        """The id of a kept structure StructureMatcher finds equal to ``structure`` (first added wins)."""
        same_formula = self._by_formula.get(structure.composition.reduced_formula, [])
        return next((cid for cid, other in same_formula if self._matcher.fit(other, structure)), None)

    def add(self, candidate_id: str, structure: Structure) -> None:
        self._by_formula.setdefault(structure.composition.reduced_formula, []).append((candidate_id, structure))

    def __len__(self) -> int:
        return sum(map(len, self._by_formula.values()))


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
