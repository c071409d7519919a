"""Dedupe at scale: StructureIndex on 600 and 2,400 structures of one formula, against a scan over all kept.

    python benchmarks/dedupe.py [--formula TaWB6] [--small 600] [--large 2400] [--seed 7] [--exhaustive-large]

Inputs (seeded): random cells of one formula, a quarter P1 and the rest built in space groups from
tests/structure_helpers.GROUPS (up to two formula units), each followed by four twins (another cell,
a supercell, two near-duplicates: sites moved up to 0.1 Å, 1% shear, 3% volume); the small set is
the first fifth of the large one's crystals. Reported: wall time and StructureMatcher.fit calls of
the index on both sizes and their ratio (target: large/small <= 5x for 4x the structures; a scan
grows 16x), the scan over all kept structures (tests/structure_helpers.exhaustive_twins) on the small
set (on the large one too with --exhaustive-large, ~30 min), and where their twins differ: pairs of
different random crystals that StructureMatcher's loose defaults accept (see flows/dedupe.py). Also:
how many of the scan's twins a space-group + Wyckoff key (spglib) would have separated.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def index_twins(structures):
    from flows.dedupe import StructureIndex

    index, twins = StructureIndex(), {}
    start = time.perf_counter()
    for cid, structure in structures:
        twins[cid] = index.twin_of(structure)
        if twins[cid] is None:
            index.add(cid, structure)
    return twins, index, time.perf_counter() - start


def spacegroup_key(structure, symprec: float = 0.1):
    """(space group, sorted (species, Wyckoff multiplicity)) of the matcher's reduced cell."""
    import numpy as np
    import spglib
    from pymatgen.analysis.structure_matcher import StructureMatcher

    reduced = StructureMatcher._get_reduced_structure(structure, primitive_cell=True, niggli=True)
    names = sorted({str(sp) for sp in reduced.species})
    numbers = [names.index(str(sp)) + 1 for sp in reduced.species]
    data = spglib.get_symmetry_dataset((reduced.lattice.matrix, reduced.frac_coords, numbers), symprec=symprec)
    orbits, sizes = np.unique(data.equivalent_atoms, return_counts=True)
    return data.number, tuple(sorted((numbers[o], int(s)) for o, s in zip(orbits, sizes, strict=True)))


def compare(expected: dict, found: dict, crystal_of: dict) -> dict:
    differ = [cid for cid in expected if expected[cid] != found[cid]]
    loose = sum(1 for cid, twin in expected.items() if twin and crystal_of[twin] != crystal_of[cid])
    return {"twins": sum(t is not None for t in expected.values()), "differ": len(differ), "loose": loose}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formula", default="TaWB6")
    parser.add_argument("--small", type=int, default=600)
    parser.add_argument("--large", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--exhaustive-large", action="store_true")
    args = parser.parse_args()

    import numpy as np
    from rich.console import Console
    from rich.table import Table
    from structure_helpers import exhaustive_twins, random_crystal, with_twins

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    crystals = [random_crystal(args.formula, rng) for _ in range(args.large // 5)]
    large = with_twins(crystals, rng)
    small_ids = {f"c{i}-{k}" for i in range(args.small // 5) for k in range(5)}
    small = [item for item in large if item[0] in small_ids]
    crystal_of = {cid: cid.rsplit("-", 1)[0] for cid, _ in large}
    print(f"{len(small)} / {len(large)} structures of {args.formula} ({len(crystals)} random crystals + 4 twins "
          f"each) built in {time.perf_counter() - start:.0f} s; {os.cpu_count()} CPU cores")

    rows = {}
    for label, structures in (("small", small), ("large", large)):
        found, index, seconds = index_twins(structures)
        rows[label] = {"n": len(structures), "index_s": seconds, "fits": index.fits, "kept": len(index), "found": found}
        print(f"index, {len(structures)} structures: {seconds:.1f} s, {index.fits} fits, {len(index)} kept", flush=True)
    for label, structures in (("small", small),) + ((("large", large),) if args.exhaustive_large else ()):
        start = time.perf_counter()
        rows[label]["expected"] = exhaustive_twins(structures)
        rows[label]["scan_s"] = time.perf_counter() - start
        print(f"scan, {len(structures)} structures: {rows[label]['scan_s']:.1f} s", flush=True)

    table = Table(title=f"Dedupe of {args.formula}: StructureIndex vs a scan over all kept structures")
    for column in ("structures", "index (s)", "fit calls", "kept", "scan (s)", "scan twins", "twins differ",
                   "scan twins across crystals"):
        table.add_column(column, justify="right")
    for row in rows.values():
        agreement = compare(row["expected"], row["found"], crystal_of) if "expected" in row else None
        table.add_row(str(row["n"]), f"{row['index_s']:.1f}", str(row["fits"]), str(row["kept"]),
                      f"{row['scan_s']:.1f}" if agreement else "-",
                      *([str(agreement[k]) for k in ("twins", "differ", "loose")] if agreement else ["-"] * 3))
    console = Console(width=140)
    console.print(table)
    ratio = rows["large"]["index_s"] / rows["small"]["index_s"]
    scale = rows["large"]["n"] / rows["small"]["n"]
    console.print(f"index time {rows['large']['n']} / {rows['small']['n']}: {ratio:.2f}x for {scale:.0f}x the "
                  f"structures (target <= 5x; a scan: {scale ** 2:.0f}x); index vs scan on {rows['small']['n']}: "
                  f"{rows['small']['scan_s'] / rows['small']['index_s']:.1f}x faster")

    expected = rows["small"]["expected"]
    keys = {cid: spacegroup_key(s) for cid, s in small}
    split = sum(1 for cid, twin in expected.items() if twin and keys[cid] != keys[twin])
    console.print(f"space-group + Wyckoff key (spglib, symprec 0.1) on the {len(small)}-structure scan: "
                  f"{split} of {compare(expected, expected, crystal_of)['twins']} twins have different keys "
                  f"(a bucket by it would lose them); {len(set(keys.values()))} distinct keys")


if __name__ == "__main__":
    main()
