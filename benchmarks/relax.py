"""Relaxation paths side by side, same structures, potential and fmax, one run: crystalgen's batched
FIRE, TorchSim's batched FIRE (``prerelax.relaxer: torchsim``) and an ASE one-structure-at-a-time loop.

    .venv/bin/python benchmarks/relax.py [--n 64] [--fmax 0.05] [--max-steps 200] [--threads 2] [--device cpu]
    .venv-torchsim/bin/python benchmarks/relax.py --potentials TensorNet-MatPES-PBE-v2025.1-PES,sevenn:7net-0

Inputs: ``n`` decorated Ta-W-B AFLOW prototypes (2-4 sites, volume from the element-volume guess,
unrelaxed). Every path uses FIRE (ASE constants) with the Frechet cell filter. The ASE loop is
``ase.optimize.FIRE(FrechetCellFilter(atoms))`` with the model's own ASE calculator (matgl
``PESCalculator``, sevenn ``SevenNetCalculator``; crystalgen's ``PotentialCalculator`` otherwise), on
``--ase-threads`` (default 1: tiny tensors, where the one-at-a-time loop is fastest); its final
structures go through the same validity checks as the batched paths' (a collapse into a hole of the
potential counts as failed). Per potential
and path: seconds, structures/s, converged fraction, the energy difference per structure to the
crystalgen path (meV/atom; structures every path relaxed) and the speed-up over the ASE loop. A
path that cannot run here (TorchSim needs Python >= 3.12 and a model it wraps) is listed with why.
``--device cuda`` runs every path on the GPU (TorchSim with its memory-estimating autobatcher).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MATGL_BACKEND", "PYG")

DEFAULT_POTENTIALS = "TensorNet-MatPES-PBE-v2025.1-PES,sevenn:7net-0"


def ase_calculator(potential):
    """The model's own ASE calculator (what a user of that model would loop with)."""
    from crystalgen.potentials.ase_calculator import PotentialCalculator

    if type(potential).__name__ == "MatglPotential":
        from matgl.ext.ase import PESCalculator

        return PESCalculator(potential.model, stress_unit="eV/A3")
    if type(potential).__name__ == "SevenNetPotential":
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator(str(potential.checkpoint), modal=potential.modal, device=potential.device)
    return PotentialCalculator(potential)


def ase_loop(structures, potential, fmax: float, max_steps: int):
    """(energies per atom or NaN, converged flags) of FIRE + FrechetCellFilter, one structure at a time."""
    import numpy as np
    import torch
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    from crystalgen.relax import validate_structure

    calculator = ase_calculator(potential)
    energies, converged = [], []
    with torch.device(potential.device):  # matgl's calculator builds its graphs on torch's default device
        for structure in structures:
            atoms = AseAtomsAdaptor.get_atoms(structure)
            atoms.calc = calculator
            try:
                ok = FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=fmax, steps=max_steps)
                energy = atoms.get_potential_energy() / len(atoms)
            except Exception:  # noqa: BLE001 - a structure the model cannot evaluate counts as not converged
                ok, energy = False, np.nan
            # judged like the batched paths judge theirs: a collapse into a hole of the potential is a failure
            if np.isfinite(energy) and validate_structure(AseAtomsAdaptor.get_structure(atoms)):
                ok, energy = False, np.nan
            energies.append(energy)
            converged.append(bool(ok))
    return np.array(energies), converged


def run_path(path: str, structures, potential, args):
    """(seconds, energies per atom (NaN where failed), converged flags), or a string saying why not."""
    import numpy as np
    import torch

    if path == "ase":
        torch.set_num_threads(args.ase_threads)
        start = time.perf_counter()
        energies, converged = ase_loop(structures, potential, args.fmax, args.max_steps)
        return time.perf_counter() - start, energies, converged
    torch.set_num_threads(args.threads)
    if path == "torchsim":
        if importlib.util.find_spec("torch_sim") is None:
            return "torch-sim-atomistic not installed (Python >= 3.12: make install-torchsim)"
        if potential.torchsim_model() is None:
            return "TorchSim has no wrapper for this model"
        from crystalgen.relax_torchsim import relax_structures_torchsim as relax
    else:
        from crystalgen.relax import relax_structures as relax
    start = time.perf_counter()
    results = relax(structures, potential, fmax=args.fmax, max_steps=args.max_steps, progress=False)
    seconds = time.perf_counter() - start
    return seconds, np.array([r.energy_per_atom if r.ok else np.nan for r in results]), [r.converged for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the batched paths")
    parser.add_argument("--ase-threads", type=int, default=1, help="torch threads of the ASE loop")
    parser.add_argument("--potentials", default=DEFAULT_POTENTIALS,
                        help="comma-separated potential specs; those that cannot load here are reported and skipped. "
                             "M3GNet names need the DGL environment: MATGL_BACKEND=DGL .venv-dgl/bin/python ...")
    parser.add_argument("--paths", default="crystalgen,torchsim,ase", help="comma-separated: crystalgen, torchsim, ase")
    parser.add_argument("--device", default="cpu", help="torch device of the potential, for every path (cpu, cuda)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from pymatgen.core import Structure

    from crystalgen.potentials import load_potential
    from crystalgen.prototypes import BuildConfig, generate_candidates

    candidates = generate_candidates(BuildConfig(systems=["Ta-W-B", "Ta-B", "W-B", "Ta-W"], max_sites=4))
    pool = [Structure.from_dict(c["structure"]) for c in candidates if len(c["structure"]["sites"]) >= 2]
    structures = pool[:: max(1, len(pool) // args.n)][: args.n]
    n = len(structures)
    print(f"{n} structures ({sum(len(s) for s in structures)} atoms), fmax={args.fmax} eV/Å, max_steps={args.max_steps}, "
          f"device={args.device}, torch {torch.__version__} threads: batched {args.threads}, ASE loop {args.ase_threads}")

    rows = []
    for spec in args.potentials.split(","):
        try:
            potential = load_potential(spec, device=args.device)
        except ValueError as exc:
            rows.append(f"| {spec} | - | not available here: {exc} |||||")
            continue
        potential.predict(structures[:2])  # warm-up (and CUDA context)
        done = {path: run_path(path, structures, potential, args) for path in args.paths.split(",")}
        reference = done.get("crystalgen")
        ase_seconds = done["ase"][0] if not isinstance(done.get("ase", ""), str) else None
        for path, outcome in done.items():
            if isinstance(outcome, str):
                rows.append(f"| {potential.name} | {path} | {outcome} |||||")
                continue
            seconds, energies, converged = outcome
            agreement = "(reference)"
            if path != "crystalgen" and reference is not None and not isinstance(reference, str):
                both = np.isfinite(energies) & np.isfinite(reference[1])
                diff = np.abs(energies[both] - reference[1][both]) * 1000
                agreement = f"median {np.median(diff):.2f}, max {diff.max():.2f} ({both.sum()} structures)" if both.any() else "-"
                if both.any() and diff.max() > 5:
                    worst = np.flatnonzero(both)[np.argmax(diff)]
                    agreement += (f"; worst {structures[worst].composition.reduced_formula} #{worst}: "
                                  f"{energies[worst]:.3f} vs {reference[1][worst]:.3f} eV/atom")
            speedup = f"{ase_seconds / seconds:.2f}x" if ase_seconds else "-"
            rows.append(f"| {potential.name} | {path} | {seconds:.1f} | {n / seconds:.3f} | "
                        f"{sum(converged)}/{n} | {agreement} | {speedup} |")
            print(rows[-1], flush=True)
    print()
    print("| potential | path | seconds | structures/s | converged | abs. energy difference to crystalgen (meV/atom) "
          "| speed-up vs ASE loop |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
