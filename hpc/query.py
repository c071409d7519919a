"""Ranked candidates of a campaign in the formats people and programs want.

The document layout and indexes belong to ``flows.candidates``; this module builds the ranked
query (always ``campaign`` first, sorted by ``e_above_hull``, with the matching index as ``hint``)
and turns the result into table rows, JSON, CSV or CIF files.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

FORMATS = ("table", "json", "csv", "cif")
COLUMNS = ("candidate_id", "formula", "spacegroup", "stage", "e_above_hull", "below_hull", "energy_per_atom",
           "engine", "is_dft", "prerelax_e_above_hull", "duplicate_of")
TABLE_COLUMNS = COLUMNS[:-3]  # the terminal table leaves out is_dft, prerelax_e_above_hull, duplicate_of


RANKED_STAGE = "hull"  # candidates with an e_above_hull; the default of `crystalgen candidates`
SORT = [("e_above_hull", 1), ("candidate_id", 1)]


def candidate_query(campaign: str, *, below_hull: bool = False, max_e_above_hull: float | None = None,
                    formula: str | None = None, spacegroup: int | None = None,
                    stage: str | None = RANKED_STAGE, duplicates: bool = False) -> tuple[dict, list, list]:
    """(filter, sort, index) of a candidates query. The index is the one of the collection's
    ``(campaign, ...)`` indexes that narrows the filter most; it is passed as ``hint`` so every
    server (mongod, SecantusDB) runs the query on it. ``duplicates=False`` leaves out candidates
    whose relaxed structure repeats a better-ranked one (``hull.duplicate_of``)."""
    from pymatgen.core import Composition

    from flows.candidates import duplicate_filter

    filt: dict = {"campaign": campaign}
    if stage:
        filt["stage"] = stage
    if below_hull:  # the flag, plus the range it implies, which the (campaign, e_above_hull) index serves
        filt["hull.below_hull"] = True
        max_e_above_hull = 0.0 if max_e_above_hull is None else min(max_e_above_hull, 0.0)
    if max_e_above_hull is not None:
        filt["e_above_hull"] = {"$lte": max_e_above_hull}
    if formula:
        filt["formula"] = Composition(formula).reduced_formula
    if spacegroup is not None:
        filt["condition.spacegroup"] = int(spacegroup)
    if not duplicates:
        filt.update(duplicate_filter(False))
    for field in ("formula", "condition.spacegroup", "e_above_hull", "stage"):  # most selective first
        if field in filt:
            return filt, SORT, [("campaign", 1), (field, 1)]
    return filt, SORT, [("campaign", 1), ("e_above_hull", 1)]


def find_candidates(campaign: str, *, limit: int = 0, coll=None, **filters) -> list[dict]:
    """Candidates of ``campaign``, lowest ``e_above_hull`` first (see ``candidate_query`` for filters;
    ``stage=None``: every stage, unranked ones first since MongoDB sorts missing values first)."""
    from flows import candidates

    coll = coll if coll is not None else candidates.collection()
    filt, sort, index = candidate_query(campaign, **filters)
    return list(coll.find(filt, hint=index, sort=sort, limit=limit))


def summary(doc: dict) -> dict:
    """The flat row of one candidate (what table, CSV and JSON show)."""
    relax = doc.get("relax") or {}
    prerelax = doc.get("prerelax") or {}
    condition = doc.get("condition") or {}
    return {
        "candidate_id": doc.get("candidate_id"),
        "formula": doc.get("formula"),
        "spacegroup": condition.get("spacegroup"),
        "stage": doc.get("stage"),
        "e_above_hull": doc.get("e_above_hull"),
        "below_hull": (doc.get("hull") or {}).get("below_hull"),
        "energy_per_atom": relax.get("energy_per_atom"),
        "engine": relax.get("engine"),
        "is_dft": relax.get("is_dft"),
        "prerelax_e_above_hull": prerelax.get("e_above_hull"),
        "duplicate_of": (doc.get("hull") or {}).get("duplicate_of"),
    }


def to_json(docs: list[dict]) -> str:
    """Rows plus the condition, hull decomposition and final structure (pymatgen dict)."""
    out = []
    for doc in docs:
        row = summary(doc)
        row["condition"] = doc.get("condition")
        row["hull"] = doc.get("hull")
        row["structure"] = doc.get("structure")
        out.append(row)
    return json.dumps(out, indent=2, default=str)


def to_csv(docs: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS))
    writer.writeheader()
    for doc in docs:
        writer.writerow(summary(doc))
    return buffer.getvalue()


def write_cifs(docs: list[dict], out_dir: Path) -> list[Path]:
    """One CIF per candidate with a structure, named ``<rank>_<formula>_<candidate_id>.cif``."""
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifWriter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for rank, doc in enumerate(docs, start=1):
        if not doc.get("structure"):
            continue
        path = out_dir / f"{rank:04d}_{doc.get('formula')}_{doc['candidate_id']}.cif"
        tmp = path.with_suffix(".cif.tmp")
        CifWriter(Structure.from_dict(doc["structure"])).write_file(tmp)
        tmp.replace(path)  # never leave half a file
        paths.append(path)
    return paths


def rich_table(docs: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="right" if column in ("e_above_hull", "energy_per_atom") else "left")
    for doc in docs:
        row = summary(doc)
        cells = []
        for column in TABLE_COLUMNS:
            value = row[column]
            cells.append(f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value)))
        table.add_row(*cells)
    return table
