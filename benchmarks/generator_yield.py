"""What each generator yields before any potential runs, and (``--relax``) after a pre-relaxation.

    .venv/bin/python benchmarks/generator_yield.py [--formulas Ta1W1B6 Ta1W2B5 Ta2W1B5]
        [--groups 191 187 12 38 65 1] [--n 4] [--seed 0] [--relax] [--out results/generator_yield]

Same conditions and sample budget for every generator: ``model`` (the shipped demo checkpoint),
``random-symmetric`` (PyXtal) and ``substitution`` (from the shipped Ta-W-B reference phases and the
shipped AFLOW-prototype dataset). Per generator: samples made (``valid``), accepted by the relaxer's
checks as made (``relaxable``), repaired by :mod:`crystalgen.rescue` (``rescued``), in the requested
space group (symprec 0.1, of the valid ones), StructureMatcher-distinct among relaxable + rescued
(``distinct``), and of those matching no reference phase, prototype record or structure of the
model's training split (``novel``). ``--relax`` pre-relaxes relaxable + rescued structures with the
default potential (FIRE, fmax 0.05 eV/Å, 100 steps: the demo campaign's pre-relax) and counts
converged, distinct converged and novel converged, for rescued structures separately too.
Writes ``yield.md`` and ``yield.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MATGL_BACKEND", "PYG")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formulas", nargs="+", default=["Ta1W1B6", "Ta1W2B5", "Ta2W1B5"])
    parser.add_argument("--groups", nargs="+", type=int, default=[191, 187, 12, 38, 65, 1])
    parser.add_argument("--energy", type=float, default=-0.5, help="formation energy condition of the model (eV/atom)")
    parser.add_argument("--n", type=int, default=4, help="samples per condition and generator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--relax", action="store_true", help="also pre-relax with the default potential")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/generator_yield"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from pymatgen.core import Structure

    from crystalgen.generators import GENERATORS, generate
    from crystalgen.known import labelled, prototype_structures, training_structures
    from crystalgen.novelty import NoveltyIndex, first_occurrences
    from crystalgen.relax import validate_structure
    from crystalgen.rescue import rescue
    from crystalgen.sample import DEFAULT_CHECKPOINT, Condition
    from crystalgen.symmetry import spacegroup_number
    from flows.references import default_reference_file, read_reference_file

    references = labelled("reference", [(p["name"], p["structure"]) for p in read_reference_file(default_reference_file())["phases"]])
    prototypes = prototype_structures()
    known = NoveltyIndex([*references, *prototypes, *training_structures(DEFAULT_CHECKPOINT)])
    conditions = [Condition(formula=f, spacegroup=g, formation_energy=args.energy) for f in args.formulas for g in args.groups]

    rows, usable_by_generator = {}, {}
    for name in GENERATORS:
        started = time.perf_counter()
        extra = {"sources": [*references, *prototypes]} if name == "substitution" else {}
        if name == "model":
            extra = {"device": "cpu"}
        samples = generate(name, conditions, samples_per_condition=args.n, seed=args.seed, **extra)
        seconds = time.perf_counter() - started
        usable, kinds = [], []
        counts = dict(generated=len(samples), valid=0, relaxable=0, rescued=0, rescue_refused=0, in_group=0)
        for s in samples:
            cell = s.pymatgen or (Structure.from_dict(s.rejected_structure) if s.rejected_structure else None)
            if s.structure is not None:
                counts["valid"] += 1
                counts["in_group"] += spacegroup_number(cell) == s.condition.spacegroup
            if cell is None:
                continue
            if validate_structure(cell) is None:
                counts["relaxable"] += 1
                usable.append(cell)
                kinds.append("as made")
                continue
            repaired = rescue(cell)
            if repaired.rescued:
                counts["rescued"] += 1
                usable.append(repaired.structure)
                kinds.append("rescued")
            else:
                counts["rescue_refused"] += 1
        firsts = first_occurrences(usable)
        distinct = [i for i in range(len(usable)) if firsts[i] == i]
        counts["distinct"] = len(distinct)
        counts["novel"] = sum(known.match(usable[i]) is None for i in distinct)
        counts["seconds"] = round(seconds, 1)
        rows[name] = counts
        usable_by_generator[name] = (usable, kinds)
        print(name, counts, flush=True)

    if args.relax:
        from crystalgen.potentials import checked_potential
        from crystalgen.relax import relax_structures

        potential = checked_potential(None)
        for name, (usable, kinds) in usable_by_generator.items():
            started = time.perf_counter()
            results = relax_structures(usable, potential, fmax=0.05, max_steps=100, progress=False)
            for label, wanted in (("", None), ("rescued_", "rescued")):
                done = [r.structure for r, k in zip(results, kinds) if r.ok and r.converged and (wanted is None or k == wanted)]
                firsts = first_occurrences(done)
                distinct = [done[i] for i in range(len(done)) if firsts[i] == i]
                rows[name][f"{label}converged"] = len(done)
                rows[name][f"{label}converged_distinct"] = len(distinct)
                rows[name][f"{label}converged_novel"] = sum(known.match(s) is None for s in distinct)
            rows[name]["relax_seconds"] = round(time.perf_counter() - started, 1)
            print(name, rows[name], flush=True)

    columns = list(next(iter(rows.values())))
    table = ["| generator | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    table += [f"| {name} | " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for name, row in rows.items()]
    setup = (f"{', '.join(args.formulas)} x space groups {', '.join(map(str, args.groups))} x {args.n} samples, seed {args.seed}, "
             f"model condition E = {args.energy} eV/atom; {os.cpu_count()} CPU cores, {args.threads} torch thread(s)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "yield.md").write_text(f"# Generator yield\n\n{setup}\n\n" + "\n".join(table) + "\n")
    (args.out / "yield.json").write_text(json.dumps({"setup": setup, "generators": rows}, indent=2) + "\n")
    print(setup)
    print("\n".join(table))


if __name__ == "__main__":
    main()
