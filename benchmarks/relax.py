"""Batched FIRE relaxer vs ASE one-structure-at-a-time, same structures, potential and fmax, one run.

    .venv/bin/python benchmarks/relax.py [--n 64] [--fmax 0.05] [--max-steps 200] [--threads 2] [--device cpu]

Inputs: the first ``n`` decorated Ta-W-B AFLOW prototypes (2-4 sites, volume from the element-volume
guess, unrelaxed). Baselines: ``ase.optimize.FIRE(FrechetCellFilter(atoms))`` with (a) matgl's own
``PESCalculator`` and (b) crystalgen's ``PotentialCalculator`` (identical model code to the batched
path, so (b) isolates the gain from batching), on the same thread count as the batched run and on
one thread (where the one-at-a-time loop is fastest). Prints structures/s and the speed-up ratios,
the last one against the fastest baseline. ``--device cuda`` runs every path on the GPU.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MATGL_BACKEND", "PYG")


def _ase_relax_all(structures, make_calc, fmax: float, max_steps: int) -> tuple[float, list[float], int]:
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    energies, steps = [], 0
    start = time.perf_counter()
    for structure in structures:
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = make_calc()
        optimizer = FIRE(FrechetCellFilter(atoms), logfile=None)
        optimizer.run(fmax=fmax, steps=max_steps)
        energies.append(atoms.get_potential_energy() / len(atoms))
        steps += optimizer.nsteps
    return time.perf_counter() - start, energies, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both paths (the target is on 2 cores)")
    parser.add_argument("--potential", default=None, help="potential spec (default: the embedded TensorNet); "
                        "M3GNet names need the DGL environment: MATGL_BACKEND=DGL .venv-dgl/bin/python ...")
    parser.add_argument("--device", default="cpu", help="torch device of the potential, for every path (cpu, cuda)")
    parser.add_argument("--skip-matgl-calculator", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import torch
    from pymatgen.core import Structure

    torch.set_num_threads(args.threads)
    from crystalgen.potentials import load_potential
    from crystalgen.potentials.ase_calculator import PotentialCalculator
    from crystalgen.prototypes import BuildConfig, generate_candidates
    from crystalgen.relax import relax_structures

    potential = load_potential(args.potential, device=args.device)
    candidates = generate_candidates(BuildConfig(systems=["Ta-W-B", "Ta-B", "W-B", "Ta-W"], max_sites=4))
    pool = [Structure.from_dict(c["structure"]) for c in candidates if len(c["structure"]["sites"]) >= 2]
    structures = pool[:: max(1, len(pool) // args.n)][: args.n]
    natoms = sum(len(s) for s in structures)
    print(f"{len(structures)} structures ({natoms} atoms), {potential.version}, fmax={args.fmax}, "
          f"max_steps={args.max_steps}, torch threads={args.threads}, device={potential.device}")
    potential.predict(structures[:2])  # warm-up (and CUDA context)

    start = time.perf_counter()
    batched = relax_structures(structures, potential, fmax=args.fmax, max_steps=args.max_steps, progress=False)
    t_batched = time.perf_counter() - start
    e_batched = np.array([r.energy_per_atom if r.ok else np.nan for r in batched])
    print(f"batched:  {t_batched:8.1f} s  {len(structures) / t_batched:6.2f} structures/s  "
          f"converged {sum(r.converged for r in batched)}/{len(batched)}, FIRE steps {sum(r.steps for r in batched)}")

    # the one-at-a-time loop is fastest on 1 thread (tiny tensors), so it is timed there as well
    ase_threads = sorted({1, args.threads})
    rows = [("crystalgen PotentialCalculator", lambda: PotentialCalculator(potential), n) for n in ase_threads]
    if not args.skip_matgl_calculator:
        from matgl.ext.ase import PESCalculator  # the backend this process runs

        rows.append(("matgl PESCalculator", lambda: PESCalculator(potential.model, stress_unit="eV/A3"), 1))
    best = None
    for label, make_calc, threads in rows:
        torch.set_num_threads(threads)
        # matgl's calculator builds its graphs on torch's default device
        with torch.device(potential.device):
            t_ase, e_ase, steps = _ase_relax_all(structures, make_calc, args.fmax, args.max_steps)
        diff = np.nanmax(np.abs(e_batched - np.array(e_ase)))
        print(f"ASE + {label}, {threads} thread(s): {t_ase:8.1f} s  {len(structures) / t_ase:6.2f} structures/s, "
              f"FIRE steps {steps}, max |dE| vs batched {diff * 1000:.2f} meV/atom")
        print(f"  speed-up batched ({args.threads} threads) / this: {t_ase / t_batched:.2f}x")
        best = t_ase if best is None else min(best, t_ase)
    print(f"speed-up batched ({args.threads} threads) / fastest ASE loop: {best / t_batched:.2f}x")

if __name__ == "__main__":
    main()
