"""Ranked candidates of a campaign in the formats people and programs want.

The document layout, indexes and the query builder belong to ``flows.candidates``; this module runs
the query and turns the result into table rows, JSON, CSV or CIF files.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from flows.candidates import summary

FORMATS = ("table", "json", "csv", "cif")
COLUMNS = ("candidate_id", "formula", "spacegroup", "stage", "e_above_hull", "below_hull", "energy_per_atom",
           "engine", "generator", "novel", "matches", "is_dft", "prerelax_e_above_hull", "duplicate_of")
#: the terminal table (80 columns): JSON and CSV carry the rest (generator, novel, matches, ...)
TABLE_COLUMNS = COLUMNS[:8]


def find_candidates(campaign: str, *, limit: int = 0, coll=None, stage: str | None = "hull", **filters) -> list[dict]:
    """Candidates of ``campaign``, lowest ``e_above_hull`` first (filters: see ``flows.candidates.CandidateQuery``;
    ``stage=None``: every state, unranked ones first since MongoDB sorts missing values first)."""
    from flows import candidates
    from flows.candidates import CandidateQuery

    coll = coll if coll is not None else candidates.collection()
    return CandidateQuery(campaign, stages=None if stage is None else (stage,), **filters).find(coll, limit=limit)


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
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), extrasaction="ignore")
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
