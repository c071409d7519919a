"""Metal-site orderings of boride structure types: the ternary data 8-site Ta-W-B cells need.

The AFLOW prototype set holds binary borides and few ternaries. Real ternary borides such as
(Ta,W)B2 or (Ta,W)2B5 are orderings of two metals on the metal sublattice of a boride structure
type. This module builds them: each structure type (AlB2, ReB2, W2B5, CrB, FeB, MoB, ...) is
expanded into every supercell up to ``max_sites`` (Hermite normal forms), every assignment of
the two metals to its metal sites is made, and symmetry-equivalent assignments are merged with
pymatgen's StructureMatcher. The candidates have the same form as the prototype builder's, so
they are relaxed, resumed and assembled by :mod:`crystalgen.prototypes`.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Composition, Lattice, Structure

from crystalgen.data.dataset import read_dataset, write_dataset
from crystalgen.prototypes import RELAX_SETTINGS, BuildConfig, aflow_prototypes, decorate

#: Boride structure types: (name, AFLOW label, prototype formula, {prototype species: "M" or "B"},
#: Strukturbericht). AFLOW labels are not unique (FeB shares its label with SnS, GeS and MnP), so
#: the formula picks the entry. W2B is CuAl2-type (W on Al sites), M3B2 borides are U3Si2-type.
#: ReB2 is not in pymatgen's library and is built by :func:`reb2_type`.
BORIDE_TYPES: tuple[tuple[str, str | None, str | None, dict[str, str], str | None], ...] = (
    ("AlB2", "AB2_hP3_191_a_d", "AlB2", {"Al": "M", "B": "B"}, "C32"),
    ("ReB2", None, None, {}, None),
    ("CrB", "AB_oC8_63_c_c", "CrB", {"Cr": "M", "B": "B"}, "B33"),
    ("FeB", "AB_oP8_62_c_c", "FeB", {"Fe": "M", "B": "B"}, "B27"),
    ("MoB", "AB_tI16_141_e_e", "MoB", {"Mo": "M", "B": "B"}, "B_g"),
    ("Mo2B5", "A5B2_hR7_166_a2c_c", "Mo2B5", {"Mo": "M", "B": "B"}, "D8_i"),
    ("W2B5", "A5B2_hP14_194_abdf_f", "W2B5", {"W": "M", "B": "B"}, "D8_h"),
    ("W2B", "A2B_tI12_140_h_a", "CuAl2", {"Al": "M", "Cu": "B"}, "C16"),
    ("U3Si2", "A2B3_tP10_127_g_ah", "U3Si2", {"U": "M", "Si": "B"}, "D5_a"),
)
BORON = "B"
METAL_PLACEHOLDER = "Re"  # the metal sublattice is labelled with one metal until it is decorated


def reb2_type(metal: str = METAL_PLACEHOLDER) -> Structure:
    """ReB2 type (P6_3/mmc, hP6): metal 2c (1/3, 2/3, 1/4), B 4f (1/3, 2/3, 0.548); a 2.90, c 7.48 Å."""
    lattice = Lattice.hexagonal(2.90, 7.48)
    return Structure.from_spacegroup(194, lattice, [metal, BORON], [[1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.548]])


@lru_cache(maxsize=None)
def boride_parent(name: str) -> Structure:
    """Primitive cell of a boride structure type, metal sites as ``METAL_PLACEHOLDER``, boron as B."""
    types = {entry[0]: entry for entry in BORIDE_TYPES}
    if name not in types:
        raise ValueError(f"unknown boride structure type {name!r}; known: {', '.join(types)}")
    _, label, formula, roles, _ = types[name]
    if label is None:
        return reb2_type().get_primitive_structure(tolerance=0.01)
    wanted = Composition(formula).reduced_composition
    structure = next(s for lbl, _, s in aflow_prototypes() if lbl == label and s.composition.reduced_composition == wanted)
    structure = structure.copy()
    structure.replace_species({el: METAL_PLACEHOLDER if role == "M" else BORON for el, role in roles.items()})
    return structure


def hermite_normal_forms(det: int) -> Iterator[np.ndarray]:
    """Supercell matrices (rows = new vectors, pymatgen's convention) of every index-``det`` sublattice, once each.

    The transposes of the lower-triangular Hermite normal forms [[a,0,0],[b,c,0],[d,e,f]] with
    a c f = det, 0 <= b < c, 0 <= d, e < f.
    """
    for a, c, f in itertools.product(range(1, det + 1), repeat=3):
        if a * c * f != det:
            continue
        for b, d, e in itertools.product(range(c), range(f), range(f)):
            yield np.array([[a, 0, 0], [b, c, 0], [d, e, f]]).T


def symmetry_key(structure: Structure) -> tuple:
    """Exact invariants (formula, space group, orbit sizes per element): equal for equivalent orderings.

    Orbit sizes, not Wyckoff letters: letters depend on the origin spglib picks (1a and 1b swap).
    """
    import spglib

    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    dataset = spglib.get_symmetry_dataset(cell, symprec=0.01)
    orbits = np.bincount(dataset.equivalent_atoms, minlength=len(structure))
    sizes = sorted((cell[2][i], int(orbits[i])) for i in np.flatnonzero(orbits))
    return structure.composition.reduced_formula, len(structure), dataset.number, tuple(sizes)


def _decorations(supercell: Structure, metals: tuple[str, str]) -> Iterator[Structure]:
    sites = [i for i, site in enumerate(supercell) if site.specie.symbol == METAL_PLACEHOLDER]
    for choice in itertools.product(metals, repeat=len(sites)):
        if len(set(choice)) < 2:
            continue  # single-metal cells are binaries the prototype set already holds
        decorated = supercell.copy()
        for index, metal in zip(sites, choice):
            decorated.replace(index, metal)
        yield decorated


def ordering_candidates(
    metals: tuple[str, str] = ("Ta", "W"), max_sites: int = 12, types: tuple[str, ...] | None = None
) -> list[dict]:
    """Symmetry-distinct two-metal orderings of every boride type, as prototype-builder candidates.

    Ids are ``order:<type>:<metals>:<supercell index>-<n>``, deterministic for the same inputs.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    names = types or tuple(entry[0] for entry in BORIDE_TYPES)
    tags = {entry[0]: (entry[1], entry[4]) for entry in BORIDE_TYPES}
    matcher = StructureMatcher(ltol=0.01, stol=0.01, angle_tol=0.1, scale=False, attempt_supercell=False)  # exact: same parent geometry
    candidates = []
    for name in names:
        parent = boride_parent(name)
        kept: dict[tuple, list[Structure]] = defaultdict(list)
        for det in range(1, max_sites // len(parent) + 1):
            for hnf in hermite_normal_forms(det):
                supercell = parent.copy()
                supercell.make_supercell(hnf)
                for decorated in _decorations(supercell, metals):
                    key = symmetry_key(decorated)
                    if any(matcher.fit(decorated, other) for other in kept[key]):
                        continue
                    kept[key].append(decorated)
        label, strukturbericht = tags[name]
        for n, structure in enumerate(s.get_primitive_structure(tolerance=0.01) for group in kept.values() for s in group):
            formula = structure.composition.formula.replace(" ", "")
            mapping = {el.symbol: el.symbol for el in structure.composition.elements}
            candidates.append({
                "id": f"order:{name}:{'-'.join(metals)}:{formula}:{n:03d}",
                "prototype": label or f"{name}-type",
                "strukturbericht": strukturbericht,
                "pearson": None,
                "mineral": None,
                "parent": f"{name} ({'/'.join(metals)} ordering)",
                "structure": decorate(structure, mapping).as_dict(),
            })
    candidates.sort(key=lambda c: (len(c["structure"]["sites"]), c["id"]))
    return candidates


# --------------------------------------------------------------------------- dataset = base + orderings


def build_ordering_dataset(
    base: Path,
    output: Path,
    work_dir: Path,
    config: BuildConfig,
    metals: tuple[str, str] = ("Ta", "W"),
    max_sites: int = 12,
    types: tuple[str, ...] | None = None,
    workers: int = 2,
    partial: bool = False,
    on_chunk: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any]:
    """Relax the orderings (resumable chunks, dask) and write ``output`` = ``base`` + the new structures.

    Formation energies use ``base``'s elemental references, which is only sound for the same
    potential: a base relaxed with another potential is refused. Orderings that StructureMatcher
    finds in ``base`` (same formula) are left out, so the output holds each crystal once.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from crystalgen.prototypes import assemble_records, load_chunk_rows, make_chunks, run_chunks

    base_meta, base_records = read_dataset(base)
    references = (base_meta.get("stats") or {}).get("elemental_references_eV_per_atom")
    if not references:
        raise ValueError(f"base dataset {base} has no metadata.stats.elemental_references_eV_per_atom")
    missing = [el for el in (*metals, BORON) if el not in references]
    if missing:
        raise ValueError(f"base dataset {base} has no elemental reference for {', '.join(missing)}")

    candidates = ordering_candidates(metals, max_sites, types)
    wanted = [c["id"] for c in candidates]
    out_dir = work_dir / f"orderings-{config.relax_key()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "settings.json").write_text(config.model_dump_json(include=RELAX_SETTINGS))
    rows, meta = load_chunk_rows(out_dir, wanted)
    finished = {row["id"] for row in rows}
    chunks = make_chunks([c for c in candidates if c["id"] not in finished], config.chunk_size, prefix="order-")
    on_chunk(0, len(chunks))
    if not partial and chunks:
        chunk_ids = [cid for cid, _ in chunks]
        done = lambda _: on_chunk(sum((out_dir / f"{cid}.json.gz").exists() for cid in chunk_ids), len(chunks))  # noqa: E731
        run_chunks(chunks, config, out_dir, workers, on_done=done)
        rows, meta = load_chunk_rows(out_dir, wanted)
    if not rows:
        raise RuntimeError(f"no finished chunks in {out_dir}")
    if base_meta.get("potential") and meta.get("potential") != base_meta["potential"]:
        raise ValueError(
            f"base dataset {base} was relaxed with {base_meta['potential']}, the orderings with "
            f"{meta.get('potential')}: their formation energies cannot be mixed"
        )
    records, stats = assemble_records(rows, meta, config, references=references, source="boride-ordering+mlip")

    matcher = StructureMatcher()
    by_formula: dict[str, list[Structure]] = defaultdict(list)
    for record in base_records:
        by_formula[record.formula].append(record.pymatgen)
    new = [r for r in records if not any(matcher.fit(r.pymatgen, other) for other in by_formula[r.formula])]
    stats.update(
        base_records=len(base_records),
        orderings_kept=len(new),
        orderings_already_in_base=len(records) - len(new),
        candidates_total=len(wanted),
        complete=len(rows) == len(wanted),
    )
    metadata = {
        **base_meta,
        "name": f"{base_meta.get('name', 'dataset')}+orderings",
        "description": f"{base.name} plus {'/'.join(metals)} orderings on the metal sites of boride structure types",
        "base": {"file": base.name, "records": len(base_records), "stats": base_meta.get("stats")},
        "orderings": {"metals": list(metals), "max_sites": max_sites, "types": list(types or [t[0] for t in BORIDE_TYPES]),
                      "fmax": config.fmax, "max_steps": config.max_steps, "stats": stats},
        "complete": bool(base_meta.get("complete", True)) and stats["complete"],
    }
    write_dataset(output, [*base_records, *new], metadata)
    return stats
