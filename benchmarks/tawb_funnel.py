"""The paper's Ta-W-B cells through the generation funnel: generated -> valid -> pre-relaxed -> unique -> group kept.

Run: ``python benchmarks/tawb_funnel.py [--checkpoint CKPT] [--modes none,project,wyckoff,project-or-wyckoff]
[--samples 4] [--pyxtal] [--out results/tawb_funnel.json]``.

For Ta1W1B6, Ta1W2B5 and Ta2W1B5 and every space group of ``campaigns/tawb_paper.yaml`` the model
samples ``--samples`` structures, one per target formation energy on the campaign's hull-relative
grid (hull + 0.1 * k eV/atom, k = -2, -1, 0, 1, ...; the hull is the TensorNet hull of the shipped
Ta-W-B data). Each symmetry mode post-processes the same network samples as sampling would
(:func:`crystalgen.sample.impose_symmetry`: a sample rejected for colliding atoms gets its atoms
rebuilt in its cell). PyXtal random crystals (``from_random``, default tolerances and volumes;
counts doubled in centred groups, as the conventional cell needs) go through the same funnel as the
baseline.

* valid: decoded and passing the relaxer's overlap and collapsed-bond checks (``validate_structure``);
* converged: pre-relaxed with the shipped TensorNet (FIRE, fmax 0.05 eV/Å, 100 steps) to fmax
  without failing its checks (collapsed bonds included);
* unique: converged crystals StructureMatcher tells apart, per formula;
* kept: converged crystals whose space group at symprec 0.1 is the requested one.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from rich.console import Console
from rich.table import Table

from crystalgen.data.dataset import read_dataset
from crystalgen.potentials import checked_potential
from crystalgen.relax import relax_structures, validate_structure
from crystalgen.sample import DEFAULT_CHECKPOINT, Condition, impose_symmetry, sample_structures
from crystalgen.symmetrize import conventional_counts

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = ROOT / "campaigns" / "tawb_paper.yaml"
HULL_DATA = ROOT / "crystalgen" / "assets" / "datasets" / "aflow_prototypes_tensornet.jsonl.gz"
FORMULAS = ("Ta1W1B6", "Ta1W2B5", "Ta2W1B5")
OFFSETS = (-0.2, -0.1, 0.0, 0.1, -0.3, 0.2, -0.4, 0.3)  # eV/atom from the hull, all on the campaign's grid


def hull_energies(formulas, dataset: Path = HULL_DATA) -> dict[str, float]:
    """Formation energy (eV/atom) of the TensorNet hull of the shipped Ta-W-B records at each formula."""
    _, records = read_dataset(dataset)
    entries = [PDEntry(Composition(el), 0.0) for el in ("Ta", "W", "B")]
    for r in records:
        comp = Composition(r.formula)
        if {el.symbol for el in comp.elements} <= {"Ta", "W", "B"} and r.formation_energy_per_atom is not None:
            entries.append(PDEntry(comp, r.formation_energy_per_atom * comp.num_atoms))
    diagram = PhaseDiagram(entries)
    return {f: float(diagram.get_hull_energy_per_atom(Composition(f))) for f in formulas}


def conditions(samples: int, spacegroups, hulls) -> list[Condition]:
    return [Condition(formula=f, spacegroup=g, formation_energy=round(hulls[f] + OFFSETS[k], 6))
            for f in FORMULAS for g in spacegroups for k in range(samples)]


def pyxtal_baseline(conds: list[Condition], seed: int) -> list[Structure | None]:
    from pyxtal import pyxtal

    out = []
    for i, c in enumerate(conds):
        species = [el.symbol for el in Composition(c.formula) for _ in range(int(Composition(c.formula)[el]))]
        counts = conventional_counts(species, c.spacegroup)
        crystal = pyxtal()
        try:
            crystal.from_random(3, c.spacegroup, list(counts), list(counts.values()), random_state=seed * 100_003 + i)
            out.append(crystal.to_pymatgen().get_primitive_structure(tolerance=0.01) if crystal.valid else None)
        except Exception:  # noqa: BLE001 - PyXtal refuses incompatible compositions with many error types
            out.append(None)
    return out


def funnel(name, conds, structures, relaxed_of, matcher) -> dict:
    n = len(conds)
    valid = [s is not None and validate_structure(s) is None for s in structures]
    converged, kept_by_group, total_by_group = [], defaultdict(int), defaultdict(int)
    for c, s, ok in zip(conds, structures, valid):
        if not ok:
            continue
        result = relaxed_of(s)
        total_by_group[c.spacegroup] += 1
        if result.ok and result.converged:
            converged.append((c, result.structure))
            try:
                found = SpacegroupAnalyzer(result.structure, symprec=0.1).get_space_group_number()
            except Exception:  # noqa: BLE001
                found = None
            kept_by_group[c.spacegroup] += int(found == c.spacegroup)
    unique = 0
    by_formula: dict[str, list[Structure]] = defaultdict(list)
    for c, s in converged:
        if not any(matcher.fit(s, other) for other in by_formula[c.formula]):
            by_formula[c.formula].append(s)
            unique += 1
    n_valid = sum(valid)
    return {
        "name": name, "samples": n, "valid": n_valid, "converged": len(converged), "unique": unique,
        "kept": sum(kept_by_group.values()),
        "valid_fraction": n_valid / n, "converged_fraction": len(converged) / n,
        "unique_per_sample": unique / n, "kept_of_valid": sum(kept_by_group.values()) / max(n_valid, 1),
        "per_group": {g: {"valid": total_by_group[g], "kept": kept_by_group[g]} for g in sorted(total_by_group)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--modes", default="none,project,wyckoff,project-or-wyckoff")
    parser.add_argument("--samples", type=int, default=4, help="samples per (formula, space group), one per energy")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the checkpoint's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pyxtal", action="store_true", help="also run PyXtal random crystals through the funnel")
    parser.add_argument("--relax-steps", type=int, default=100)
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path("results/tawb_funnel.json"))
    args = parser.parse_args()
    console = Console(width=180)

    spacegroups = yaml.safe_load(CAMPAIGN.read_text())["spacegroups"]
    hulls = hull_energies(FORMULAS)
    conds = conditions(args.samples, spacegroups, hulls)
    started = time.perf_counter()
    raw = sample_structures(args.checkpoint, conds, steps=args.steps, seed=args.seed, symmetry="none")
    console.print(f"sampled {len(raw)} structures in {time.perf_counter() - started:.0f} s; hull: {hulls}")

    candidates: dict[str, list[Structure | None]] = {}
    for mode in args.modes.split(","):
        started = time.perf_counter()
        out = []
        for sample in raw:
            made = impose_symmetry(sample.pymatgen, sample.reason, sample.rejected_structure, sample.condition, mode,
                                   sample.seed)["structure"]
            out.append(None if made is None else Structure.from_dict(made))
        candidates[mode] = out
        console.print(f"{mode}: {time.perf_counter() - started:.0f} s")
    if args.pyxtal:
        candidates["pyxtal-random"] = pyxtal_baseline(conds, args.seed)

    # relax every distinct valid structure once, whatever modes produced it
    unique_inputs: dict[str, Structure] = {}
    for structures in candidates.values():
        for s in structures:
            if s is not None and validate_structure(s) is None:
                unique_inputs.setdefault(json.dumps(s.as_dict(), sort_keys=True), s)
    potential = checked_potential(None)
    started = time.perf_counter()
    keys = list(unique_inputs)
    results = relax_structures([unique_inputs[k] for k in keys], potential, fmax=args.fmax, max_steps=args.relax_steps,
                               batch_size=64, progress=False)
    relaxed = dict(zip(keys, results))
    console.print(f"relaxed {len(keys)} distinct structures in {time.perf_counter() - started:.0f} s")

    matcher = StructureMatcher()
    rows = [funnel(name, conds, structures, lambda s: relaxed[json.dumps(s.as_dict(), sort_keys=True)], matcher)
            for name, structures in candidates.items()]
    table = Table(title=f"{args.checkpoint.name}: {len(conds)} conditions ({', '.join(FORMULAS)} x {len(spacegroups)} groups x "
                        f"{args.samples} energies), TensorNet FIRE fmax {args.fmax}, {args.relax_steps} steps")
    for col in ("source", "valid", "converged", "unique / sample", "group kept / valid"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for r in rows:
        table.add_row(r["name"], f"{r['valid']} ({r['valid_fraction']:.0%})", f"{r['converged']} ({r['converged_fraction']:.0%})",
                      f"{r['unique']} ({r['unique_per_sample']:.2f})", f"{r['kept']} ({r['kept_of_valid']:.0%})")
    console.print(table)
    groups = Table(title="space group kept after pre-relaxation / valid samples, per requested group")
    groups.add_column("group")
    for r in rows:
        groups.add_column(r["name"], justify="right")
    for g in spacegroups:
        groups.add_row(str(g), *[f"{r['per_group'].get(g, {}).get('kept', 0)}/{r['per_group'].get(g, {}).get('valid', 0)}"
                                 for r in rows])
    console.print(groups)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "hull_eV_per_atom": hulls, "samples": args.samples,
                                    "seed": args.seed, "fmax": args.fmax, "relax_steps": args.relax_steps, "results": rows},
                                   indent=1) + "\n")
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
