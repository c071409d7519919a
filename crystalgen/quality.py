"""Validity, uniqueness and novelty of a set of generated structures (the V.U.N. of the literature).

The chain follows CDVAE / MatterGen: **valid** = decoded with no atoms closer than 0.5 Å (what the
samplers already reject); **unique** = StructureMatcher-distinct among the valid ones; **novel** =
unique ones that match no known structure (:class:`crystalgen.novelty.NoveltyIndex`, typically
the model's training split). **Relaxable**, reported next to them, is the stricter test the
MLIP relaxer applies before it spends compute (overlaps, bonds under 0.6 x the covalent-radius sum,
collapsed cells: :func:`crystalgen.relax.validate_structure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pymatgen.core import Structure

from crystalgen.novelty import NoveltyIndex, first_occurrences
from crystalgen.relax import validate_structure


@dataclass(frozen=True)
class SampleQuality:
    generated: int
    valid: int
    relaxable: int
    unique: int
    novel: int | None  # None: no known structures to compare with

    @property
    def valid_fraction(self) -> float:
        return self.valid / self.generated if self.generated else 0.0

    @property
    def relaxable_fraction(self) -> float:
        return self.relaxable / self.generated if self.generated else 0.0

    @property
    def unique_fraction(self) -> float:
        """Distinct share of the valid structures."""
        return self.unique / self.valid if self.valid else 0.0

    @property
    def novel_fraction(self) -> float | None:
        """Novel share of the unique structures."""
        if self.novel is None:
            return None
        return self.novel / self.unique if self.unique else 0.0


def sample_quality(structures: Sequence[Structure | None], known: NoveltyIndex | None = None) -> SampleQuality:
    """Counts for ``structures`` (``None`` = a sample that produced no valid structure)."""
    firsts = first_occurrences(structures)
    unique = [s for i, s in enumerate(structures) if s is not None and firsts[i] == i]
    return SampleQuality(
        generated=len(structures),
        valid=sum(s is not None for s in structures),
        relaxable=sum(s is not None and validate_structure(s) is None for s in structures),
        unique=len(unique),
        novel=None if known is None else sum(known.match(s) is None for s in unique),
    )
