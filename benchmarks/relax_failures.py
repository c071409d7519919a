"""What failing structures cost the batched relaxer, with and without stopping them early.

    python benchmarks/relax_failures.py [--formula Ta1W1B6] [--groups 191 187 12 38 65 1] [--per-group 8]
                                        [--max-steps 500] [--fmax 0.05] [--threads 2] [--seed 3]

Inputs: samples of the shipped generative model (``crystalgen sample``'s default checkpoint) for the
formula in each space group, at formation energy -0.3 eV/atom, seeded; the ones generation already
rejects are counted and left out. Both runs relax the same structures with the shipped TensorNet at
the same fmax / step limit; the baseline turns off the relaxer's early stop
(``crystalgen.relax._doomed_reason``), i.e. it runs failing structures to the step limit as before.
Reported per run: wall time, potential evaluations (structures x steps, what a GPU or CPU pays for),
outcomes by reason; and that the early stop changed nothing else: every structure it stopped also
failed in the baseline, every other result has the baseline's energy.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MATGL_BACKEND", "PYG")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class CountingPotential:
    """Wraps a potential and counts the structures it evaluates."""

    def __init__(self, inner) -> None:
        self.inner, self.evaluations = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, structures):
        self.evaluations += len(structures)
        return self.inner.predict(structures)


def outcome(result) -> str:
    if result.error:
        return re.sub(r"-?\d+(\.\d+)?", "#", result.error.split(":")[0])
    return "converged" if result.converged else "step limit"


def relax(structures, potential, args, early_stop: bool) -> tuple[list, float, int]:
    import crystalgen.relax as relax_module

    original = relax_module._doomed_reason
    if not early_stop:
        relax_module._doomed_reason = lambda *_: None
    counting = CountingPotential(potential)
    start = time.perf_counter()
    try:
        results = relax_module.relax_structures(structures, counting, fmax=args.fmax, max_steps=args.max_steps,
                                                progress=False)
    finally:
        relax_module._doomed_reason = original
    return results, time.perf_counter() - start, counting.evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formula", default="Ta1W1B6")
    parser.add_argument("--groups", type=int, nargs="+", default=[191, 187, 12, 38, 65, 1])
    parser.add_argument("--per-group", type=int, default=8)
    parser.add_argument("--energy", type=float, default=-0.3)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    from crystalgen.potentials import load_potential
    from crystalgen.sample import sample_structures

    torch.set_num_threads(args.threads)
    conditions = [{"formula": args.formula, "spacegroup": g, "formation_energy": args.energy} for g in args.groups]
    samples = sample_structures(None, conditions, samples_per_condition=args.per_group, seed=args.seed, device="cpu")
    structures = [s.pymatgen for s in samples if s.valid]
    potential = load_potential(None)
    console = Console(width=140)
    console.print(f"{len(samples)} samples of {args.formula} in groups {args.groups} (seed {args.seed}); "
                  f"{len(samples) - len(structures)} rejected by generation's own checks, {len(structures)} relaxed "
                  f"with {potential.version}, fmax {args.fmax}, at most {args.max_steps} steps, {args.threads} threads")

    runs = {}
    for label, early in (("baseline: run to the step limit", False), ("stop what can only fail", True)):
        runs[label] = relax(structures, potential, args, early)
        console.print(f"{label}: {runs[label][1]:.0f} s", flush=True)

    table = Table(title="relaxing generated cells: failures run to the end vs stopped early")
    for column in ("run", "wall (s)", "potential evaluations", "outcomes"):
        table.add_column(column, justify="left" if column in ("run", "outcomes") else "right")
    for label, (results, seconds, evaluations) in runs.items():
        outcomes = ", ".join(f"{n} {reason}" for reason, n in Counter(map(outcome, results)).most_common())
        table.add_row(label, f"{seconds:.0f}", str(evaluations), outcomes)
    console.print(table)

    (base, base_s, base_n), (early, early_s, early_n) = runs.values()
    stopped = [i for i, r in enumerate(early) if r.error and r.steps < base[i].steps]
    false_stops = [i for i in stopped if base[i].ok]
    changed = [i for i, (a, b) in enumerate(zip(base, early, strict=True))
               if i not in stopped and (a.ok != b.ok or (a.ok and abs(a.energy_per_atom - b.energy_per_atom) > 1e-6))]
    console.print(f"stopped early: {len(stopped)} structures, {len(false_stops)} of them valid in the baseline; other "
                  f"results changed: {len(changed)}; potential evaluations {early_n} vs {base_n} "
                  f"({base_n / max(early_n, 1):.2f}x fewer), wall {early_s:.0f} vs {base_s:.0f} s")


if __name__ == "__main__":
    main()
