"""The one on-disk dataset format every importer writes and every trainer reads.

A dataset is a JSON Lines file (optionally gzip-compressed, chosen by the ``.gz`` suffix).
Line 1 is a header ``{"format": "crystalgen-dataset", "version": 1, "metadata": {...}}``;
every further line is one :class:`DatasetRecord`. JSON Lines keeps the file streamable,
diff-able and readable without this package, and pymatgen dicts keep structures exact.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, Field
from pymatgen.core import Structure

FORMAT_NAME = "crystalgen-dataset"
FORMAT_VERSION = 1


class DatasetFormatError(ValueError):
    """A file is not a crystalgen dataset, or one of its lines is malformed."""


class DatasetRecord(BaseModel):
    """One structure with its labels and where it came from."""

    id: str
    structure: dict[str, Any] = Field(description="pymatgen Structure.as_dict()")
    formula: str = Field(description="reduced formula: the polymorph-group key")
    spacegroup: int = Field(ge=1, le=230)
    formation_energy_per_atom: float | None = Field(default=None, description="eV/atom")
    energy_per_atom: float | None = Field(default=None, description="total energy, eV/atom")
    source: str = ""
    provenance: dict[str, Any] = Field(default_factory=dict)

    @property
    def pymatgen(self) -> Structure:
        return Structure.from_dict(self.structure)

    @property
    def nsites(self) -> int:
        return len(self.structure["sites"])


def _open_text(path: Path, mode: str, compressed: bool | None = None) -> TextIO:
    if path.suffix == ".gz" if compressed is None else compressed:
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def write_dataset(path: str | os.PathLike, records: Iterable[DatasetRecord], metadata: dict[str, Any]) -> int:
    """Write atomically (temp file + rename) so a killed write never leaves half a dataset."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    count = 0
    with _open_text(tmp, "w", compressed=path.suffix == ".gz") as fh:
        header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "metadata": metadata}
        fh.write(json.dumps(header) + "\n")
        for record in records:
            fh.write(record.model_dump_json() + "\n")
            count += 1
    os.replace(tmp, path)
    return count


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    with _open_text(Path(path), "r") as fh:
        return _parse_header(fh.readline(), path)


def iter_records(path: str | os.PathLike) -> Iterator[DatasetRecord]:
    with _open_text(Path(path), "r") as fh:
        _parse_header(fh.readline(), path)
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                yield DatasetRecord.model_validate_json(line)
            except ValueError as exc:
                raise DatasetFormatError(f"{path}:{lineno}: bad record: {exc}") from exc


def read_dataset(path: str | os.PathLike) -> tuple[dict[str, Any], list[DatasetRecord]]:
    return read_metadata(path), list(iter_records(path))


def _parse_header(line: str, path: str | os.PathLike) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path}: not a crystalgen dataset (bad header line)") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise DatasetFormatError(f"{path}: not a crystalgen dataset (header format != {FORMAT_NAME!r})")
    if header.get("version") != FORMAT_VERSION:
        raise DatasetFormatError(f"{path}: dataset version {header.get('version')} != {FORMAT_VERSION}")
    return header.get("metadata", {})
