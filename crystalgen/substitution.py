"""The ``substitution`` baseline: ion exchange into known structures, mixed sites ordered in supercells.

For a condition's cell formula (e.g. Ta1W1B6, 8 sites) every known structure (reference phases,
the shipped prototype dataset, a folder of CIFs; :mod:`crystalgen.known`) whose cell divides the
site count is tried as a parent:

1. **Species map.** Each parent element becomes one target element, or, on at most one sublattice, a
   mix of two (TaB2's metal site -> Ta + W), so that a supercell of the parent has exactly the target
   counts. A map is scored with pymatgen's data-mined substitution probabilities (Hautier et al. 2011,
   :class:`~pymatgen.analysis.structure_prediction.substitution_probability.SubstitutionProbability`):
   the product over parent elements of the conditional probability of each target element given the
   parent element, like ``Substitutor``'s ``cond_prob_list``. That table is ionic and has no boride
   anion, so each element pair takes its most probable oxidation-state pair; maps scoring below
   ``THRESHOLD`` (``Substitutor``'s default, 1e-3) are dropped.
2. **Ordering.** A mixed sublattice is ordered in every supercell of the parent with the needed
   number of cells (Hermite normal forms), each with every arrangement of the two elements
   (pymatgen's ``OrderDisorderedStructureTransformation``; enumlib is not used). Arrangements per
   supercell above ``MAX_ORDERINGS`` are skipped, with a count.
3. **Volume.** The cell is scaled by the ratio of expected volumes (target over parent,
   :func:`crystalgen.volume.expected_volume`), keeping the parent's own packing.
4. **Ranking.** Candidates are sorted by score (then parent order, supercell, arrangement), and
   StructureMatcher duplicates are dropped: first within each space group (spglib, symprec 0.1),
   then across groups among the survivors (a relaxed parent can sit just outside its ideal group).

Sample k of a condition is the k-th best distinct candidate **in the condition's space group**
(``match_spacegroup=False``: in-group candidates first, then the others); with fewer candidates the
sample has ``structure=None`` and a reason that gives the counts. The ranking is deterministic: the
seed changes nothing and is only recorded.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from pymatgen.core import Composition, Structure

from crystalgen.known import KnownStructure
from crystalgen.novelty import first_occurrences, matcher
from crystalgen.sample import Condition, GeneratedSample, sample_seed
from crystalgen.symmetry import spacegroup_number
from crystalgen.volume import expected_volume

NAME = "substitution"
THRESHOLD = 1e-3
MAX_ORDERINGS = 2000  # arrangements of one mixed sublattice in one supercell


@dataclass(frozen=True)
class Candidate:
    structure: Structure
    spacegroup: int
    probability: float
    origin: str


@cache
def _probability_table():
    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability

    return SubstitutionProbability()


@cache
def element_probability(target: str, parent: str) -> float:
    """P(target | parent) from pymatgen's substitution table, best oxidation-state pair; for an element
    the table does not hold: 1 for itself, 0 for any other."""
    table = _probability_table()
    targets = [sp for sp in table.species if sp.symbol == target]
    parents = [sp for sp in table.species if sp.symbol == parent]
    if not targets or not parents:
        return 1.0 if target == parent else 0.0
    return max(table.cond_prob(t, p) for t in targets for p in parents)


def species_maps(parent: Composition, target: Composition, multiple: int) -> Iterator[tuple[dict, float]]:
    """({parent element: {target element: count in the supercell}}, probability) for every map that
    turns ``multiple`` copies of the ``parent`` cell into the ``target`` cell, at most one element mixed."""
    wanted = {el.symbol: int(round(n)) for el, n in target.items()}
    sources = {el.symbol: int(round(n)) * multiple for el, n in parent.items()}
    names = sorted(sources)
    for choice in itertools.product(sorted(wanted), repeat=len(names)):
        pure = dict(zip(names, choice))
        for mixed in [None, *names]:
            if mixed is None:
                maps = {s: {t: sources[s]} for s, t in pure.items()}
                if _totals(maps) == wanted:
                    yield maps, _score(maps)
                continue
            for other in sorted(wanted):
                if other <= pure[mixed]:
                    continue  # each unordered pair once
                rest = {s: {t: sources[s]} for s, t in pure.items() if s != mixed}
                have = _totals(rest)
                count = wanted[other] - have.get(other, 0)
                if 1 <= count < sources[mixed]:
                    maps = {**rest, mixed: {pure[mixed]: sources[mixed] - count, other: count}}
                    if _totals(maps) == wanted:
                        yield maps, _score(maps)


def _totals(maps: dict[str, dict[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for counts in maps.values():
        for element, n in counts.items():
            totals[element] += n
    return dict(totals)


def _score(maps: dict[str, dict[str, int]]) -> float:
    return math.prod(element_probability(t, s) for s, counts in maps.items() for t in counts)


def hermite_normal_forms(det: int) -> Iterator[np.ndarray]:
    """Every lower-triangular Hermite normal form of determinant ``det``: each supercell of that size once."""
    for a, c, f in itertools.product(range(1, det + 1), repeat=3):
        if a * c * f == det:
            for b, d, e in itertools.product(range(c), range(f), range(f)):
                yield np.array([[a, 0, 0], [b, c, 0], [d, e, f]])


def _decorations(parent: Structure, maps: dict[str, dict[str, int]], multiple: int) -> Iterator[tuple[Structure, str]]:
    """The parent's supercells with the map applied: (structure, where in the enumeration it came from)."""
    from pymatgen.transformations.standard_transformations import OrderDisorderedStructureTransformation

    mixed = next((s for s, counts in maps.items() if len(counts) == 2), None)
    replacement = {s: next(iter(counts)) for s, counts in maps.items() if len(counts) == 1}
    if mixed is None:
        structure = parent.copy()
        structure.replace_species(replacement)
        if multiple > 1:
            structure.make_supercell([multiple, 1, 1])  # every supercell of a pure map is the same crystal
        yield structure, "pure"
        return
    total = sum(maps[mixed].values())
    for h, hnf in enumerate(hermite_normal_forms(multiple)):
        structure = parent.copy()
        structure.make_supercell(hnf)
        if math.comb(total, min(maps[mixed].values())) > MAX_ORDERINGS:
            continue
        structure.replace_species({**replacement, mixed: {t: n / total for t, n in maps[mixed].items()}})
        ranked = OrderDisorderedStructureTransformation(no_oxi_states=True).apply_transformation(
            structure, return_ranked_list=MAX_ORDERINGS)
        for o, entry in enumerate(ranked):
            yield entry["structure"], f"supercell {hnf.tolist()} arrangement {o + 1}/{len(ranked)}"


def substitution_candidates(formula: str, sources: Sequence[KnownStructure]) -> list[Candidate]:
    """Distinct candidates for the cell ``formula``, best first (see the module docstring)."""
    target = Composition(formula)
    n_sites = int(round(target.num_atoms))
    raw = []
    for order, known in enumerate(sources):
        parent_formula = Composition(known.formula)
        if len(parent_formula) > len(target) or n_sites % known.nsites:
            continue
        multiple = n_sites // known.nsites
        parent = known.structure
        if not parent.is_ordered:
            continue
        for maps, probability in species_maps(parent.composition, target, multiple):
            if probability < THRESHOLD:
                continue
            for structure, where in _decorations(parent, maps, multiple):
                ratio = expected_volume(target) / expected_volume(parent.composition * multiple)
                structure.scale_lattice(structure.volume * ratio)
                text = ", ".join(f"{s}->{'+'.join(f'{t}{n}' for t, n in c.items())}" for s, c in sorted(maps.items()))
                raw.append((-probability, order, where, structure,
                            f"substitution from {known.label}: {text} (p={probability:.3g}), {where}"))
    raw.sort(key=lambda item: item[:3])
    sm = matcher()
    by_group: dict[int, list[Candidate]] = defaultdict(list)
    ordered = []
    for negative_p, _, _, structure, origin in raw:
        group = spacegroup_number(structure)
        if any(sm.fit(structure, other.structure) for other in by_group[group]):
            continue
        by_group[group].append(Candidate(structure, group, -negative_p, origin))
        ordered.append(by_group[group][-1])
    # a relaxed parent can sit just outside its ideal group: one more pass across groups
    firsts = first_occurrences([c.structure for c in ordered])
    return [c for i, c in enumerate(ordered) if firsts[i] == i]


def substitution(
    conditions: Sequence[Condition],
    samples_per_condition: int = 1,
    seed: int = 0,
    sources: Sequence[KnownStructure] = (),
    match_spacegroup: bool = True,
) -> list[GeneratedSample]:
    """``samples_per_condition`` substituted structures per condition, in condition order."""
    if not sources:
        raise ValueError("the substitution generator needs known structures to start from (sources is empty)")
    by_formula: dict[str, list[Candidate]] = {}
    samples = []
    for condition in conditions:
        formula = Composition(condition.formula).formula.replace(" ", "")
        if formula not in by_formula:
            by_formula[formula] = substitution_candidates(formula, sources)
        everything = by_formula[formula]
        in_group = [c for c in everything if c.spacegroup == condition.spacegroup]
        ranked = in_group if match_spacegroup else in_group + [c for c in everything if c.spacegroup != condition.spacegroup]
        for k in range(samples_per_condition):
            fields = {"structure": None, "origin": "", "reason": ""}
            if k < len(ranked):
                fields.update(structure=ranked[k].structure.as_dict(), origin=ranked[k].origin)
            else:
                fields["reason"] = (f"{len(in_group)} distinct substitution candidate(s) for {formula} in space group "
                                    f"{condition.spacegroup}, {len(everything) - len(in_group)} in other groups, "
                                    f"from {len(sources)} known structures")
            samples.append(GeneratedSample(condition=condition, sample_index=k, seed=sample_seed(seed, condition, k),
                                           method=NAME, steps=0, checkpoint="", **fields))
    return samples
