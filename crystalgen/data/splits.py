"""Polymorph groups and composition-disjoint splits.

A polymorph group is every structure with the same reduced formula. Splitting whole groups
keeps a composition out of validation if it is in training, so validation measures
generalisation to new compositions rather than recall of known ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from crystalgen.data.dataset import DatasetRecord


def polymorph_groups(records: Iterable[DatasetRecord]) -> dict[str, list[DatasetRecord]]:
    """Records by reduced formula, formulas and members in first-seen order."""
    groups: dict[str, list[DatasetRecord]] = defaultdict(list)
    for record in records:
        groups[record.formula].append(record)
    return dict(groups)


def split_by_formula(
    records: Sequence[DatasetRecord], val_fraction: float, seed: int = 42
) -> tuple[list[DatasetRecord], list[DatasetRecord]]:
    """(train, val) with no reduced formula on both sides.

    Whole polymorph groups are assigned to validation in a seeded random order until it holds
    at least ``val_fraction`` of the structures (at least one group, never all of them).
    Deterministic for a given seed and record set, whatever the input order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups = polymorph_groups(records)
    if val_fraction == 0.0:
        return list(records), []
    if len(groups) < 2:
        raise ValueError(
            f"cannot split by formula: all {len(records)} structures share one formula "
            f"({next(iter(groups), 'none')}); a composition-disjoint split needs >= 2 formulas"
        )
    formulas = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(formulas))
    target = val_fraction * len(records)
    val_formulas: set[str] = set()
    n_val = 0
    for idx in order[:-1]:  # the last formula always stays in training
        if n_val >= target and val_formulas:
            break
        val_formulas.add(formulas[idx])
        n_val += len(groups[formulas[idx]])
    train = [r for r in records if r.formula not in val_formulas]
    val = [r for r in records if r.formula in val_formulas]
    return train, val
