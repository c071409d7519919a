"""An offline polymorph dataset: AFLOW prototypes decorated with chosen elements, relaxed with an MLIP.

Pipeline: pymatgen's AFLOW prototype library -> every assignment of a chemical system's elements
to a prototype's distinct species -> volume pre-scan -> batched FIRE relaxation (in chunks over dask
workers; every finished chunk is a file, and a build relaxes only the candidates that no finished
chunk of the same relaxation settings holds, so a killed build resumes and a build with more systems
reuses everything relaxed before) -> formation
energies against the lowest relaxed elemental prototypes of the same potential -> duplicates merged
with StructureMatcher per composition -> space group of the relaxed cell -> crystalgen dataset file.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, field_validator
from pymatgen.core import Element, Structure

from crystalgen.data.dataset import DatasetRecord, write_dataset
from crystalgen.layout import MAX_SITES
from crystalgen.settings import get_settings

#: chemical systems of the shipped dataset: borides, carbides, nitrides, silicides and aluminides of
#: transition metals, with Ta-W-B (the paper's case study) explored deeper (":8" = primitive cells up
#: to 8 sites instead of the default limit).
DEFAULT_SYSTEMS = (
    "Ta-W-B:8", "Ta-B:8", "W-B:8", "Ta-W:8",
    "Ti-B", "Zr-B", "Hf-B", "V-B", "Nb-B", "Cr-B", "Mo-B",
    "Sc-B", "Y-B", "Mn-B", "Fe-B", "Co-B", "Ni-B", "Re-B",
    "Ti-C", "Zr-C", "Hf-C", "V-C", "Nb-C", "Ta-C", "Mo-C", "W-C", "Cr-C",
    "Ti-N", "Zr-N", "Nb-N", "Ta-N", "W-N", "V-N", "Hf-N", "Cr-N", "Mo-N",
    "Ti-Al", "Ni-Al", "Fe-Al", "Co-Al", "Zr-Al", "Nb-Al",
    "Ti-Si", "Mo-Si", "W-Si", "Nb-Si", "Zr-Si", "Cr-Si", "Fe-Si", "Co-Si", "Ni-Si", "V-Si",
    "Ti-Al-N", "Ti-Si-C", "Mo-W-B", "Nb-Ta-C",
)  # fmt: skip

#: Compounds of these are denser than the sum of elemental volumes; the pre-scan fixes the rest.
COMPOUND_VOLUME_FACTOR = 0.85
PRESCAN_VOLUME_FACTORS = (0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4)
REFERENCE_PREFIX = "ref-"  # chunk-name prefix of the elemental-reference chunks (relaxed first)
RUN_STATS = ("chunks_done", "chunks_total", "candidates_reused")  # about one run, not the dataset
RELAX_SETTINGS = {"potential", "fmax", "max_steps"}  # all that decides one candidate's relaxed result


class BuildConfig(BaseModel):
    """Everything that determines the dataset; its hash names the work folder (safe resumes)."""

    systems: list[str] = Field(default_factory=lambda: list(DEFAULT_SYSTEMS))
    max_sites: int = Field(4, ge=1, le=MAX_SITES, description="primitive-cell sites, unless a system says ':N'")
    potential: str | None = None
    fmax: float = Field(0.1, gt=0)
    max_steps: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1)
    chunk_size: int = Field(64, ge=1)
    prototypes: list[str] | None = Field(None, description="only these AFLOW labels (default: all)")
    reference_max_sites: int = Field(
        12, ge=1, le=MAX_SITES, description="unary prototypes up to this size are relaxed as elemental references"
    )

    @field_validator("systems")
    @classmethod
    def _check_systems(cls, systems: list[str]) -> list[str]:
        for system in systems:
            parse_system(system)
        return systems

    def relax_key(self) -> str:
        """Hash of what decides one candidate's relaxed result; names the work folder shared by builds.

        Systems, site limits and prototype filters only choose *which* candidates a build needs, so
        builds that differ in them share (and reuse) each other's relaxations.
        """
        payload = self.model_dump(include=RELAX_SETTINGS)
        # a potential chosen by the settings gets its own folder; None (the default) keeps its old one
        payload["potential"] = self.potential or get_settings().potential
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def parse_system(spec: str, default_max_sites: int | None = None) -> tuple[tuple[str, ...], int | None]:
    """``"Ta-W-B:8"`` -> ``(("Ta", "W", "B"), 8)``; raises ``ValueError`` naming a bad element."""
    name, _, limit = spec.partition(":")
    elements = tuple(part.strip() for part in name.split("-") if part.strip())
    if not elements:
        raise ValueError(f"empty chemical system {spec!r}")
    for el in elements:
        if not Element.is_valid_symbol(el):
            raise ValueError(f"chemical system {spec!r}: {el!r} is not an element symbol")
    if len(set(elements)) != len(elements):
        raise ValueError(f"chemical system {spec!r} repeats an element")
    if limit and (not limit.isdigit() or int(limit) < 1):
        raise ValueError(f"chemical system {spec!r}: site limit {limit!r} is not a positive integer")
    return elements, int(limit) if limit else default_max_sites


# --------------------------------------------------------------------------- prototypes & candidates


@lru_cache(maxsize=1)
def aflow_prototypes() -> tuple[tuple[str, dict[str, Any], Structure], ...]:
    """(AFLOW label, tags, primitive structure) of every prototype in pymatgen's library, smallest first."""
    from pymatgen.analysis.prototypes._data import AFLOW_PROTOTYPE_LIBRARY  # the library pymatgen's matcher uses

    entries = []
    for entry in AFLOW_PROTOTYPE_LIBRARY:
        structure = entry["snl"].structure.get_primitive_structure(tolerance=0.01)
        structure.remove_oxidation_states()
        entries.append((entry["tags"]["aflow"], dict(entry["tags"]), structure))
    entries.sort(key=lambda item: (len(item[2]), item[0]))
    return tuple(entries)


def element_volume(el: str) -> float:
    """Volume per atom in the element's solid (Å^3), from pymatgen's element data."""
    molar = Element(el).molar_volume  # cm^3/mol
    volume = float(molar) * 1e24 / 6.02214076e23 if molar else 4 / 3 * np.pi * float(Element(el).atomic_radius) ** 3
    return min(volume, 12.0)  # molecular solids (N2, O2) are far less dense than their compounds


def decorate(prototype: Structure, mapping: dict[str, str]) -> Structure:
    """Replace the prototype's species and rescale to a volume guess for the new chemistry."""
    structure = prototype.copy()
    structure.replace_species(mapping)
    guess = sum(element_volume(site.specie.symbol) for site in structure)
    if len(structure.composition.elements) > 1:
        guess *= COMPOUND_VOLUME_FACTOR
    structure.scale_lattice(guess)
    return structure


def _system_limits(config: BuildConfig) -> dict[tuple[str, ...], int]:
    wanted: dict[tuple[str, ...], int] = {}
    for spec in config.systems:
        elements, limit = parse_system(spec, config.max_sites)
        wanted[elements] = max(wanted.get(elements, 0), limit or config.max_sites)
        for el in elements:
            wanted[(el,)] = max(wanted.get((el,), 0), config.max_sites)
    return wanted


def _decorations(wanted: dict[tuple[str, ...], int], config: BuildConfig) -> dict[str, dict[str, Any]]:
    if config.prototypes is not None:
        unknown = set(config.prototypes) - {label for label, _, _ in aflow_prototypes()}
        if unknown:
            raise ValueError(f"unknown AFLOW prototype label(s): {sorted(unknown)}")
    candidates: dict[str, dict[str, Any]] = {}
    for elements, limit in wanted.items():
        for label, tags, prototype in aflow_prototypes():
            if len(prototype) > limit:
                break
            if config.prototypes is not None and label not in config.prototypes:
                continue
            species = sorted({site.specie.symbol for site in prototype}, key=lambda s: Element(s).X)
            if len(species) != len(elements):
                continue
            for order in itertools.permutations(elements):
                mapping = dict(zip(species, order, strict=True))
                cid = f"{label}:{'-'.join(mapping[s] for s in species)}"
                if cid in candidates:
                    continue
                structure = decorate(prototype, mapping)
                candidates[cid] = {
                    "id": cid,
                    "prototype": label,
                    "strukturbericht": tags.get("strukturbericht"),
                    "pearson": tags.get("pearson"),
                    "mineral": tags.get("mineral"),
                    "parent": prototype.composition.reduced_formula,
                    "structure": structure.as_dict(),
                }
    # small cells first, systems interleaved: a build stopped early still covers every system
    return dict(sorted(candidates.items(), key=lambda kv: (len(kv[1]["structure"]["sites"]), kv[0])))


def generate_candidates(config: BuildConfig) -> list[dict[str, Any]]:
    """All (prototype, element assignment) pairs for the configured systems, plus elemental prototypes.

    A system with k elements uses the prototypes with exactly k species and maps them onto its
    elements in every order; the elements of every system also get all unary prototypes up to
    ``max_sites`` (data and formation-energy references at once). Ids are deterministic and unique.
    """
    return list(_decorations(_system_limits(config), config).values())


def reference_candidates(config: BuildConfig) -> list[dict[str, Any]]:
    """Larger unary prototypes (alpha-B, molecular N2, ...) so that every element gets a sound ground state."""
    main = {c["id"] for c in generate_candidates(config)}
    elements = {key for key in _system_limits(config) if len(key) == 1}
    wanted = {el: max(config.reference_max_sites, config.max_sites) for el in elements}
    return [c for cid, c in _decorations(wanted, config).items() if cid not in main]


def make_chunks(
    candidates: Sequence[dict[str, Any]], chunk_size: int, prefix: str = ""
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Deterministic chunks, each named by a hash of its candidate ids (the resume key)."""
    chunks = []
    for start in range(0, len(candidates), chunk_size):
        members = list(candidates[start : start + chunk_size])
        digest = hashlib.sha1("\n".join(c["id"] for c in members).encode()).hexdigest()[:16]
        chunks.append((f"{prefix}{start // chunk_size:05d}-{digest}", members))
    return chunks


# --------------------------------------------------------------------------- relaxation of one chunk


def _worker_potential(spec: str | None):
    """The checked potential, on ``torch_threads`` threads: workers share the machine's cores."""
    import torch

    from crystalgen.potentials import checked_potential

    torch.set_num_threads(get_settings().torch_threads)
    return checked_potential(spec)


def prescan_volume(structures: list[Structure], potential) -> list[Structure]:
    """Rescale each structure to the lowest-energy volume on a coarse grid (one batched call per factor)."""
    from crystalgen.relax import validate_structure

    best = [(np.inf, s) for s in structures]
    for factor in PRESCAN_VOLUME_FACTORS:
        trial = []
        for s in structures:
            scaled = s.copy()
            scaled.scale_lattice(s.volume * factor)
            trial.append(scaled)
        valid = [i for i, s in enumerate(trial) if validate_structure(s, potential) is None]
        if not valid:
            continue
        try:
            predictions = potential.predict([trial[i] for i in valid])
        except Exception:  # noqa: BLE001 - the relaxer reports bad structures one by one
            continue
        for i, prediction in zip(valid, predictions, strict=True):
            if np.isfinite(prediction.energy_per_atom) and prediction.energy_per_atom < best[i][0]:
                best[i] = (prediction.energy_per_atom, trial[i])
    return [s for _, s in best]


def relax_chunk(chunk_id: str, members: list[dict[str, Any]], config: BuildConfig, out_dir: str) -> str:
    """Relax one chunk and write ``<out_dir>/<chunk_id>.json.gz`` atomically; returns the path."""
    from crystalgen.relax import relax_structures

    path = Path(out_dir) / f"{chunk_id}.json.gz"
    if path.exists():
        return str(path)
    potential = _worker_potential(config.potential)
    initial = prescan_volume([Structure.from_dict(m["structure"]) for m in members], potential)
    results = relax_structures(
        initial, potential, fmax=config.fmax, max_steps=config.max_steps, batch_size=config.batch_size, progress=False
    )
    rows = []
    for member, result in zip(members, results, strict=True):
        rows.append(
            {
                **{k: v for k, v in member.items() if k != "structure"},
                "structure": result.structure.as_dict(),
                "energy_per_atom": result.energy_per_atom,
                "steps": result.steps,
                "converged": result.converged,
                "fmax": result.fmax,
                "error": result.error,
            }
        )
    payload = {"chunk": chunk_id, "potential": potential.name, "potential_version": potential.version, "rows": rows}
    tmp = path.with_name(f".{path.name}.partial")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        json.dump(payload, fh)
    os.replace(tmp, path)
    return str(path)


def run_chunks(
    chunks: list[tuple[str, list[dict[str, Any]]]],
    config: BuildConfig,
    out_dir: Path,
    workers: int,
    on_done: Callable[[str], None] = lambda _: None,
) -> None:
    """Relax the chunks that have no result file yet: in-process (``workers=0``) or on dask workers."""
    todo = [(cid, members) for cid, members in chunks if not (out_dir / f"{cid}.json.gz").exists()]
    if not todo:
        return
    if workers <= 0:
        for cid, members in todo:
            on_done(relax_chunk(cid, members, config, str(out_dir)))
        return
    from dask.distributed import Client, LocalCluster, as_completed

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        # largest cells first: they are the deep-dive (":N") systems and the slowest chunks
        futures = [
            client.submit(
                relax_chunk,
                cid,
                members,
                config,
                str(out_dir),
                key=f"relax-{cid}",
                pure=False,
                priority=1000 if cid.startswith(REFERENCE_PREFIX) else max(len(m["structure"]["sites"]) for m in members),
            )
            for cid, members in todo
        ]
        for future in as_completed(futures):
            on_done(future.result())


# --------------------------------------------------------------------------- assembly


def load_chunk_rows(out_dir: Path, wanted: Iterable[str] | None = None) -> tuple[list[dict[str, Any]], dict]:
    """Rows of the finished chunks in ``out_dir`` (only the candidate ids in ``wanted``, if given)."""
    wanted = None if wanted is None else set(wanted)
    rows: dict[str, dict[str, Any]] = {}
    meta: dict[str, Any] = {}
    for path in sorted(out_dir.glob("*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            payload = json.load(fh)
        meta = {"potential": payload["potential"], "potential_version": payload["potential_version"]}
        for row in payload["rows"]:
            if wanted is None or row["id"] in wanted:
                rows.setdefault(row["id"], row)
    return list(rows.values()), meta


def elemental_references(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Lowest energy per atom of each element over its relaxed unary prototypes (converged preferred)."""
    refs: dict[str, tuple[bool, float]] = {}
    for row in rows:
        if row["error"] or row["energy_per_atom"] is None:
            continue
        comp = Structure.from_dict(row["structure"]).composition
        if len(comp.elements) != 1:
            continue
        el = comp.elements[0].symbol
        key = (not row["converged"], row["energy_per_atom"])  # converged first, then lowest
        if el not in refs or key < refs[el]:
            refs[el] = key
    return {el: energy for el, (_, energy) in refs.items()}


def _revalidated(row: dict[str, Any], validate: Callable[[Structure], str | None]) -> dict[str, Any]:
    """Apply the relaxer's current final-structure checks to rows relaxed by an older version."""
    if row["error"] or row["energy_per_atom"] is None:
        return row
    if reason := validate(Structure.from_dict(row["structure"])):
        return {**row, "error": reason, "converged": False}
    return row


def assemble_records(
    rows: Sequence[dict[str, Any]],
    meta: dict[str, Any],
    config: BuildConfig,
    symprec: float = 0.1,
    references: dict[str, float] | None = None,
    source: str = "aflow-prototype+mlip",
) -> tuple[list[DatasetRecord], dict[str, Any]]:
    """Formation energies, per-composition dedupe (lowest energy wins) and space groups.

    ``references`` (eV/atom per element, same potential and settings) replace the elemental
    references found among ``rows``: a build that extends another dataset uses that one's.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from crystalgen.relax import validate_structure

    rows = [_revalidated(row, validate_structure) for row in rows]
    refs = dict(references) if references is not None else elemental_references(rows)
    good = [r for r in rows if not r["error"] and r["energy_per_atom"] is not None]
    by_comp: dict[str, list[tuple[dict[str, Any], Structure]]] = defaultdict(list)
    skipped_no_ref = 0
    for row in good:
        structure = Structure.from_dict(row["structure"])
        if any(el.symbol not in refs for el in structure.composition.elements):
            skipped_no_ref += 1
            continue
        by_comp[structure.composition.reduced_formula].append((row, structure))

    matcher = StructureMatcher()
    records: list[DatasetRecord] = []
    duplicates = 0
    for formula in sorted(by_comp):
        group = sorted(by_comp[formula], key=lambda item: item[0]["energy_per_atom"])
        kept: list[tuple[dict[str, Any], Structure, list[str]]] = []
        for row, structure in group:
            twin = next((k for k in kept if matcher.fit(k[1], structure)), None)
            if twin is not None:
                twin[2].append(row["id"])
                duplicates += 1
            else:
                kept.append((row, structure, []))
        for row, structure, same_as in kept:
            comp = structure.composition
            e_form = row["energy_per_atom"] - sum(refs[el.symbol] * amt for el, amt in comp.items()) / comp.num_atoms
            try:
                spg = SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number()
            except Exception:  # noqa: BLE001 - spglib gives up on badly distorted cells
                spg = 1
            records.append(
                DatasetRecord(
                    id=f"proto:{row['id']}",
                    structure=structure.as_dict(),
                    formula=formula,
                    spacegroup=spg,
                    formation_energy_per_atom=round(float(e_form), 6),
                    energy_per_atom=round(float(row["energy_per_atom"]), 6),
                    source=source,
                    provenance={
                        "potential": meta.get("potential"),
                        "potential_version": meta.get("potential_version"),
                        "prototype": row["prototype"],
                        "strukturbericht": row.get("strukturbericht"),
                        "pearson": row.get("pearson"),
                        "parent": row["parent"],
                        "relax_steps": row["steps"],
                        "converged": row["converged"],
                        "final_fmax": row["fmax"],
                        "fmax_target": config.fmax,
                        "duplicates": same_as,
                    },
                )
            )
    stats = {
        "candidates_relaxed": len(rows),
        "failed": len(rows) - len(good),
        "converged": sum(bool(r["converged"]) for r in good),
        "skipped_without_elemental_reference": skipped_no_ref,
        "duplicates_merged": duplicates,
        "records": len(records),
        "formulas": len({r.formula for r in records}),
        "elemental_references_eV_per_atom": {el: round(e, 6) for el, e in sorted(refs.items())},
    }
    return records, stats


def build_prototype_dataset(
    config: BuildConfig,
    output: Path,
    work_dir: Path,
    workers: int = 2,
    partial: bool = False,
    on_chunk: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any]:
    """Run (or resume, or extend) the build and write ``output``.

    Only candidates that no finished chunk in the work folder holds are relaxed (``partial=True``:
    none, just assemble what is there). ``on_chunk(done, total)`` reports this run's chunks.
    """
    candidates = generate_candidates(config)
    references = reference_candidates(config)
    wanted = [c["id"] for c in references + candidates]
    out_dir = work_dir / f"prototypes-{config.relax_key()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "settings.json").write_text(config.model_dump_json(include=RELAX_SETTINGS))
    rows, meta = load_chunk_rows(out_dir, wanted)
    finished = {row["id"] for row in rows}
    chunks = make_chunks(
        [c for c in references if c["id"] not in finished], config.chunk_size, prefix=REFERENCE_PREFIX
    ) + make_chunks([c for c in candidates if c["id"] not in finished], config.chunk_size)
    chunk_ids = [cid for cid, _ in chunks]

    def count_done() -> int:
        return sum((out_dir / f"{cid}.json.gz").exists() for cid in chunk_ids)

    on_chunk(0, len(chunks))
    if not partial and chunks:
        run_chunks(chunks, config, out_dir, workers, on_done=lambda _: on_chunk(count_done(), len(chunks)))
        rows, meta = load_chunk_rows(out_dir, wanted)
    if not rows:
        raise RuntimeError(f"no finished chunks in {out_dir}")
    records, stats = assemble_records(rows, meta, config)
    stats["chunks_done"], stats["chunks_total"] = count_done(), len(chunks)
    stats["candidates_total"] = len(wanted)
    stats["candidates_reused"] = len(finished)
    metadata = {
        "name": "crystalgen-aflow-prototypes",
        "description": "AFLOW prototypes decorated with the listed chemical systems, relaxed with an MLIP",
        "source": f"pymatgen AFLOW prototype library + {meta.get('potential_version')}",
        "counts": {"rows": len(rows), "imported": len(records), "failed": stats["failed"]},
        "config": config.model_dump(),
        **{k: meta.get(k) for k in ("potential", "potential_version")},
        "complete": len(rows) == len(wanted),
        "stats": {k: v for k, v in stats.items() if k not in RUN_STATS},
    }
    write_dataset(output, records, metadata)
    return stats
