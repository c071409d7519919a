"""Read public crystal datasets into the crystalgen dataset format.

Three sources: CDVAE-style CSVs (a ``cif`` column plus an energy column), the AFLOW dataframe
columns the paper used, and a directory of CIF/POSCAR files with an optional energy table.
Every row either becomes a :class:`~crystalgen.data.dataset.DatasetRecord` that the
representation can encode (<= 60 sites, Z <= 103, ordered, known space group) or an
:class:`ImportFailure` with the reason; failures are counted in the metadata, never dropped.

Energies: a *formation* energy per atom goes to ``formation_energy_per_atom``; a *total* energy
per atom (e.g. carbon_24's ``energy_per_atom``) goes to ``energy_per_atom``. Within one
polymorph group both order the structures identically.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pymatgen.core import Composition, Lattice, Structure

from crystalgen.data.dataset import DatasetRecord, write_dataset
from crystalgen.layout import MAX_SITES, MAX_Z
from crystalgen.representation import RepresentationError, lattice_from_parameters
from crystalgen.symmetry import DEFAULT_SYMPREC, spacegroup_number

EnergyKind = Literal["formation", "total"]
Track = Callable[[Iterable, int], Iterable]

#: Energy columns recognised automatically, in order of preference, with what they hold.
CDVAE_ENERGY_COLUMNS: tuple[tuple[str, EnergyKind], ...] = (
    ("formation_energy_per_atom", "formation"),
    ("heat_ref", "formation"),  # perov_5: heat of formation w.r.t. the reference phases
    ("energy_per_atom", "total"),  # carbon_24
)
AFLOW_COLUMNS = ("pretty_formula", "positions_fractional", "geometry", "nsites", "enthalpy_formation_atom")
STRUCTURE_SUFFIXES = {".cif", ".vasp", ".poscar", ".json"}


class ImporterError(ValueError):
    """The input as a whole is unusable (missing file, missing column): nothing is imported."""


@dataclass(frozen=True)
class ImportFailure:
    row: str
    reason: str


@dataclass
class ImportResult:
    source: str
    input: str
    records: list[DatasetRecord] = field(default_factory=list)
    failures: list[ImportFailure] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.records) + len(self.failures)

    def metadata(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for f in self.failures:
            key = f.reason.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        return {
            "source": self.source,
            "input": self.input,
            "options": self.options,
            "counts": {"rows": self.n_rows, "imported": len(self.records), "failed": len(self.failures)},
            "energy": energy_summary(self.records),
            "failure_reasons": reasons,
            "failures": [{"row": f.row, "reason": f.reason} for f in self.failures],
        }


def energy_summary(records: Iterable[DatasetRecord]) -> dict[str, dict[str, float | int]]:
    """Count/min/max/mean/std of each energy field that is present."""
    out = {}
    records = list(records)
    for key in ("formation_energy_per_atom", "energy_per_atom"):
        values = np.array([getattr(r, key) for r in records if getattr(r, key) is not None], dtype=float)
        if len(values):
            out[key] = {
                "count": int(len(values)),
                "min": float(values.min()),
                "max": float(values.max()),
                "mean": float(values.mean()),
                "std": float(values.std()),
            }
    return out


def write_import(result: ImportResult, path: str | Path) -> int:
    """Write the imported records with their metadata (atomic; refuses an empty import)."""
    if not result.records:
        raise ImporterError(f"{result.input}: no row could be imported ({len(result.failures)} failures)")
    return write_dataset(path, result.records, result.metadata())


# ---------------------------------------------------------------------------------------------
# Shared row handling


def _no_track(items: Iterable, total: int) -> Iterable:
    return items


def make_record(
    structure: Structure,
    record_id: str,
    source: str,
    energy: float | None,
    energy_kind: EnergyKind,
    spacegroup: int | None = None,
    symprec: float = DEFAULT_SYMPREC,
    provenance: dict[str, Any] | None = None,
) -> DatasetRecord:
    """Validate one structure for the representation and wrap it; raises ValueError with the reason."""
    n = len(structure)
    if n == 0 or n > MAX_SITES:
        raise ValueError(f"too many sites: {n} (max {MAX_SITES})" if n else "no sites")
    if not structure.is_ordered:
        raise ValueError("disordered structure (partial occupancies)")
    max_z = max(site.specie.Z for site in structure)
    if max_z > MAX_Z:
        raise ValueError(f"element Z={max_z} > {MAX_Z}")
    if energy is not None and not math.isfinite(energy):
        raise ValueError(f"non-finite energy {energy}")
    if spacegroup is None:
        try:
            spacegroup = spacegroup_number(structure, symprec)
        except Exception as exc:  # spglib failures vary by version
            raise ValueError(f"space group: symmetry analysis failed ({exc})") from exc
    if not 1 <= int(spacegroup) <= 230:
        raise ValueError(f"space group: {spacegroup} not in 1..230")
    return DatasetRecord(
        id=record_id,
        structure=structure.as_dict(),
        formula=structure.composition.reduced_formula,
        spacegroup=int(spacegroup),
        formation_energy_per_atom=energy if energy_kind == "formation" else None,
        energy_per_atom=energy if energy_kind == "total" else None,
        source=source,
        provenance=provenance or {},
    )


def _float(value: Any, column: str) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{column}: not a number: {value!r}") from None
    if not math.isfinite(result):
        raise ValueError(f"{column}: not finite: {value!r}")
    return result


def _collect(
    rows: Iterator[tuple[str, Callable[[], DatasetRecord]]], total: int, result: ImportResult, track: Track
) -> ImportResult:
    seen: set[str] = set()
    for row_id, build in track(rows, total):
        if row_id in seen:
            result.failures.append(ImportFailure(row_id, "duplicate id"))
            continue
        seen.add(row_id)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # CifParser chatter; real problems raise
                result.records.append(build())
        except Exception as exc:  # noqa: BLE001 - any bad row is recorded with its reason, never raised
            reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            result.failures.append(ImportFailure(row_id, reason or type(exc).__name__))
    return result


def _read_csv(path: Path) -> list[dict[str, str]]:
    """The data rows of a UTF-8 CSV; a binary file or a header without rows is an ImporterError."""
    if not path.is_file():
        raise ImporterError(f"{path}: no such file")
    csv.field_size_limit(2**31 - 1)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows, columns = list(reader), reader.fieldnames
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImporterError(f"{path}: not a UTF-8 text CSV file ({exc})") from None
    return _with_rows(rows, columns, path)


def _with_rows(rows: list[dict[str, Any]], columns: Iterable[str] | None, path: Path) -> list[dict[str, Any]]:
    if not rows:
        raise ImporterError(f"{path}: no data rows (columns: {list(columns) if columns else []})")
    return rows


def _pick_energy_column(
    columns: Iterable[str], energy_column: str | None, energy_kind: EnergyKind | None, path: Path
) -> tuple[str | None, EnergyKind]:
    columns = list(columns)
    if energy_column is not None:
        if energy_column not in columns:
            raise ImporterError(f"{path}: energy column {energy_column!r} not found (columns: {columns})")
        return energy_column, energy_kind or "formation"
    for name, kind in CDVAE_ENERGY_COLUMNS:
        if name in columns:
            return name, energy_kind or kind
    return None, energy_kind or "formation"


# ---------------------------------------------------------------------------------------------
# CDVAE CSV


def import_cdvae(
    path: str | Path,
    energy_column: str | None = None,
    energy_kind: EnergyKind | None = None,
    id_column: str = "material_id",
    symprec: float = DEFAULT_SYMPREC,
    track: Track = _no_track,
) -> ImportResult:
    """CDVAE CSV: one CIF per row in ``cif``; the energy column is detected unless given."""
    path = Path(path)
    rows = _read_csv(path)
    columns = rows[0].keys()
    if "cif" not in columns:
        raise ImporterError(f"{path}: no 'cif' column (columns: {list(columns)})")
    energy_column, kind = _pick_energy_column(columns, energy_column, energy_kind, path)
    result = ImportResult(
        "cdvae", str(path), options={"energy_column": energy_column, "energy_kind": kind, "symprec": symprec}
    )

    def build(i: int, row: dict[str, str]) -> DatasetRecord:
        energy = _float(row[energy_column], energy_column) if energy_column else None
        structure = Structure.from_str(row["cif"], fmt="cif")
        return make_record(structure, _row_id(row, id_column, i), "cdvae", energy, kind, symprec=symprec,
                           provenance={"file": path.name, "row": i})

    items = ((_row_id(row, id_column, i), lambda i=i, row=row: build(i, row)) for i, row in enumerate(rows))
    return _collect(items, len(rows), result, track)


def _row_id(row: dict[str, Any], id_column: str, index: int) -> str:
    value = row.get(id_column)
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return f"row{index}"
    return str(value)


# ---------------------------------------------------------------------------------------------
# AFLOW dataframe


def parse_list_cell(value: Any, column: str) -> list:
    """A list-valued cell from CSV/JSON: a list already, JSON/Python literal text, or AFLOW's
    ``"a,b,c"`` / ``"x,y,z;x,y,z"`` text. Never ``eval``."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{column}: empty or not a list: {value!r}")
    text = value.strip()
    if text[0] in "[(":
        try:
            return list(json.loads(text))
        except json.JSONDecodeError:
            try:
                return list(ast.literal_eval(text))
            except (ValueError, SyntaxError):
                raise ValueError(f"{column}: cannot parse {text[:60]!r}") from None
    try:
        if ";" in text:
            return [[float(x) for x in part.split(",")] for part in text.split(";") if part.strip()]
        return [float(x) if _is_number(x) else x.strip() for x in text.split(",")]
    except ValueError:
        raise ValueError(f"{column}: cannot parse {text[:60]!r}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def aflow_species(row: dict[str, Any], nsites: int) -> list[str]:
    """Per-site species for an AFLOW row.

    ``species`` with one entry per site is used as is. Otherwise the distinct species (the
    ``species`` column, else the elements of ``pretty_formula`` in alphabetical order, AFLOW's
    convention) are expanded by ``composition`` counts, else by the formula scaled to ``nsites``.
    """
    species = row.get("species")
    species = parse_list_cell(species, "species") if _present(species) else None
    if species is not None and len(species) == nsites:
        return [str(s).strip() for s in species]
    formula = Composition(str(row["pretty_formula"]))
    distinct = [str(s).strip() for s in species] if species else sorted(el.symbol for el in formula.elements)
    counts = row.get("composition")
    if _present(counts):
        counts = [int(round(float(c))) for c in parse_list_cell(counts, "composition")]
    else:
        scale = nsites / formula.num_atoms
        counts = [formula[el] * scale for el in distinct]
        if any(abs(c - round(c)) > 1e-6 for c in counts):
            raise ValueError(f"nsites: {nsites} is not a multiple of formula {formula.reduced_formula}")
        counts = [int(round(c)) for c in counts]
    if len(counts) != len(distinct) or sum(counts) != nsites:
        raise ValueError(f"species: {distinct} x {counts} does not give {nsites} sites")
    return [el for el, c in zip(distinct, counts) for _ in range(c)]


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


def _read_table(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    if not path.is_file():
        raise ImporterError(f"{path}: no such file")
    try:
        name = path.name.lower()
        if name.endswith((".json", ".json.gz")):
            frame = pd.read_json(path)
        elif name.endswith((".csv", ".csv.gz")):
            frame = pd.read_csv(path)
        else:
            raise ImporterError(f"{path}: expected a .csv or .json file")
    except ValueError as exc:  # UnicodeDecodeError (a binary file) is one
        raise ImporterError(f"{path}: cannot read table ({exc})") from exc
    return _with_rows(frame.to_dict(orient="records"), list(frame.columns), path)


def import_aflow(path: str | Path, id_column: str = "auid", track: Track = _no_track) -> ImportResult:
    """AFLOW dataframe (CSV or JSON) with the paper's columns (``AFLOW_COLUMNS``)."""
    path = Path(path)
    rows = _read_table(path)
    columns = set(rows[0])
    missing = [c for c in AFLOW_COLUMNS if c not in columns]
    if missing:
        raise ImporterError(f"{path}: missing AFLOW column(s) {missing}")
    result = ImportResult("aflow", str(path), options={"id_column": id_column})

    def build(i: int, row: dict[str, Any]) -> DatasetRecord:
        geometry = [_float(x, "geometry") for x in parse_list_cell(row["geometry"], "geometry")]
        if len(geometry) != 6:
            raise ValueError(f"geometry: expected a,b,c,alpha,beta,gamma, got {len(geometry)} values")
        positions = np.array(parse_list_cell(row["positions_fractional"], "positions_fractional"), dtype=float)
        nsites = int(_float(row["nsites"], "nsites"))
        if positions.shape != (nsites, 3):
            raise ValueError(f"positions_fractional: shape {positions.shape} but nsites = {nsites}")
        try:
            lattice = Lattice(lattice_from_parameters(*geometry))
        except RepresentationError as exc:
            raise ValueError(f"geometry: {exc}") from None
        structure = Structure(lattice, aflow_species(row, nsites), positions)
        spg = row.get("spacegroup_relax")
        spg = int(_float(spg, "spacegroup_relax")) if _present(spg) else None
        energy = _float(row["enthalpy_formation_atom"], "enthalpy_formation_atom")
        return make_record(structure, _row_id(row, id_column, i), "aflow", energy, "formation", spacegroup=spg,
                           provenance={"file": path.name, "row": i})

    items = ((_row_id(row, id_column, i), lambda i=i, row=row: build(i, row)) for i, row in enumerate(rows))
    return _collect(items, len(rows), result, track)


# ---------------------------------------------------------------------------------------------
# Directory of structure files


def structure_files(directory: Path) -> list[Path]:
    """CIF / POSCAR / CONTCAR / .vasp / pymatgen-JSON files directly in ``directory``, sorted."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file()
        and (p.suffix.lower() in STRUCTURE_SUFFIXES or p.name.upper().startswith(("POSCAR", "CONTCAR")))
    )


def import_directory(
    directory: str | Path,
    energy_table: str | Path | None = None,
    id_column: str = "id",
    energy_column: str | None = None,
    energy_kind: EnergyKind | None = None,
    symprec: float = DEFAULT_SYMPREC,
    track: Track = _no_track,
) -> ImportResult:
    """Structure files in ``directory``; energies from a CSV whose ``id_column`` holds the file
    name or stem. With a table, a file without an energy row is a failure."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ImporterError(f"{directory}: not a directory")
    files = structure_files(directory)
    if not files:
        raise ImporterError(f"{directory}: no CIF/POSCAR files")
    energies: dict[str, float | str] = {}
    kind: EnergyKind = energy_kind or "formation"
    column = None
    if energy_table is not None:
        rows = _read_csv(Path(energy_table))
        if id_column not in rows[0]:
            raise ImporterError(f"{energy_table}: no {id_column!r} column")
        column, kind = _pick_energy_column(rows[0].keys(), energy_column, energy_kind, Path(energy_table))
        if column is None:
            raise ImporterError(f"{energy_table}: no energy column; name one with --energy-column")
        energies = {row[id_column].strip(): row[column] for row in rows}
    result = ImportResult(
        "directory",
        str(directory),
        options={"energy_table": str(energy_table) if energy_table else None, "energy_column": column,
                 "energy_kind": kind, "symprec": symprec},
    )

    def build(path: Path) -> DatasetRecord:
        energy = None
        if energy_table is not None:
            raw = energies.get(path.name, energies.get(path.stem))
            if raw is None:
                raise ValueError(f"energy: no row for {path.name!r} in {Path(energy_table).name}")
            energy = _float(raw, column)
        structure = Structure.from_file(path)
        return make_record(structure, path.stem if path.suffix else path.name, "directory", energy, kind,
                           symprec=symprec, provenance={"file": path.name})

    items = ((p.name, lambda p=p: build(p)) for p in files)
    return _collect(items, len(files), result, track)
