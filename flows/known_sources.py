"""The known structures of a campaign: what ``substitution`` starts from and what novelty is judged against.

Reference phases come from the campaign's reference source (the hull stage uses their *relaxed*
structures, so a candidate relaxed the same way is compared like with like); ``prototypes`` is the
shipped prototype dataset; any other source is a folder of CIF files; the training set is the one
the model's checkpoint names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from crystalgen.known import KnownStructure, cif_structures, labelled, prototype_structures, training_structures
from flows.references import ReferenceSet, ReferenceSource, reference_phases

#: source names that are not folders
NAMED_SOURCES = ("references", "prototypes")


def reference_structures(phases: Iterable[dict[str, Any]]) -> list[KnownStructure]:
    """``reference:<name>`` for each phase (``name``, ``structure``) that has a structure."""
    return labelled("reference", [(p["name"], p["structure"]) for p in phases if p.get("structure")])


def substitution_sources(sources: Sequence[str], references: ReferenceSource | None, db) -> list[KnownStructure]:
    """The parents of ``substitution``, in the order the campaign lists their sources."""
    known: list[KnownStructure] = []
    for source in sources:
        if source == "references":
            known += reference_structures(reference_phases(references, db)) if references else []
        elif source == "prototypes":
            known += prototype_structures()
        else:
            known += cif_structures(source)
    return known


def novelty_structures(references: ReferenceSet, checkpoint: str | None) -> list[KnownStructure]:
    """What a novel crystal must not match: the relaxed reference phases first, then the training set of
    ``checkpoint`` (none when the campaign runs no model)."""
    known = reference_structures(references.entries)
    return known + (training_structures(checkpoint) if checkpoint else [])
