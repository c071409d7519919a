"""One entry point for every structure generator a campaign can name.

All return :class:`crystalgen.sample.GeneratedSample` lists in condition order, one per (condition,
sample index), deterministic per (seed, condition, sample index), with ``structure=None`` and a
``reason`` for a sample that could not be made: the conditional model (``model``,
:func:`crystalgen.sample.sample_structures`), PyXtal's random symmetric crystals
(``random-symmetric``, :mod:`crystalgen.random_symmetric`) and ion exchange into known structures
(``substitution``, :mod:`crystalgen.substitution`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crystalgen.known import KnownStructure
from crystalgen.sample import Condition, GeneratedSample

GENERATORS = ("model", "random-symmetric", "substitution")


def check_generator(name: str) -> str:
    """``name`` if it is a known generator, else a ValueError naming it and the known ones."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; known generators: {', '.join(GENERATORS)}")
    return name


def generate(
    name: str,
    conditions: Sequence[Condition | dict],
    samples_per_condition: int = 1,
    seed: int = 0,
    *,
    sources: Sequence[KnownStructure] = (),
    match_spacegroup: bool = True,
    checkpoint: str | None = None,
    **model_options: Any,
) -> list[GeneratedSample]:
    """``samples_per_condition`` structures per condition from generator ``name``.

    ``sources``: the known structures ``substitution`` starts from (required there);
    ``match_spacegroup``: ``substitution`` keeps only candidates in the condition's group;
    ``checkpoint`` and ``model_options`` (method, steps, device, out, batch_size, progress) go to the model.
    """
    check_generator(name)
    if samples_per_condition < 1:
        raise ValueError(f"samples_per_condition must be >= 1, got {samples_per_condition}")
    conditions = [c if isinstance(c, Condition) else Condition.model_validate(c) for c in conditions]
    if name == "model":
        from crystalgen.sample import sample_structures

        return sample_structures(checkpoint, conditions, samples_per_condition=samples_per_condition, seed=seed, **model_options)
    if model_options or checkpoint is not None:
        extra = sorted([*model_options, *(["checkpoint"] if checkpoint is not None else [])])
        raise ValueError(f"generator {name!r} takes no model options ({', '.join(extra)})")
    if name == "random-symmetric":
        from crystalgen.random_symmetric import random_symmetric

        return random_symmetric(conditions, samples_per_condition, seed)
    from crystalgen.substitution import substitution

    return substitution(conditions, samples_per_condition, seed, sources=sources, match_spacegroup=match_spacegroup)
