"""Importers: real rows become records, bad rows are counted with their reason, and the CLI
writes a readable dataset or exits 1 with a message."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from crystalgen.data.dataset import read_dataset
from crystalgen.data.importers import (
    AFLOW_COLUMNS,
    ImporterError,
    import_aflow,
    import_cdvae,
    import_directory,
    parse_list_cell,
    write_import,
)
from crystalgen.representation import encode
from shared_data import SHARED_DATA

CDVAE = SHARED_DATA / "cdvae"


def _rows(path: Path, n: int) -> tuple[list[str], list[dict[str, str]]]:
    csv.field_size_limit(2**31 - 1)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, [row for _, row in zip(range(n), reader)]


def _write_csv(path: Path, fieldnames, rows) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def perov_csv_with_bad_rows(tmp_path) -> Path:
    fields, rows = _rows(CDVAE / "perov_5" / "val.csv", 4)
    bad = [
        dict(rows[0], material_id="broken-cif", cif="data_x\n_cell_length_a 3\n"),
        dict(rows[1], material_id="bad-energy", heat_ref="n/a"),
        dict(rows[2], material_id="too-big", cif=(_nacl() * (2, 2, 2)).to(fmt="cif")),
        dict(rows[3], material_id=rows[3]["material_id"]),  # duplicate id
    ]
    return _write_csv(tmp_path / "perov.csv", fields, rows + bad)


def test_cdvae_perov_counts_bad_rows(perov_csv_with_bad_rows):
    result = import_cdvae(perov_csv_with_bad_rows)
    assert len(result.records) == 4 and len(result.failures) == 4
    reasons = {f.row: f.reason for f in result.failures}
    assert reasons["bad-energy"].startswith("heat_ref: not a number")
    assert reasons["too-big"].startswith("too many sites: 64")
    assert "broken-cif" in reasons and "duplicate id" in reasons.values()
    meta = result.metadata()
    assert meta["counts"] == {"rows": 8, "imported": 4, "failed": 4}
    assert meta["options"]["energy_column"] == "heat_ref" and meta["options"]["energy_kind"] == "formation"
    assert meta["energy"]["formation_energy_per_atom"]["count"] == 4
    record = result.records[0]
    assert record.formation_energy_per_atom is not None and record.energy_per_atom is None
    assert encode(record.pymatgen, spacegroup=record.spacegroup).nsites == 5


def test_cdvae_carbon_total_energy(tmp_path):
    fields, rows = _rows(CDVAE / "carbon_24" / "val.csv", 5)
    result = import_cdvae(_write_csv(tmp_path / "c.csv", fields, rows))
    assert not result.failures and {r.formula for r in result.records} == {"C"}
    assert all(r.energy_per_atom == float(row["energy_per_atom"]) for r, row in zip(result.records, rows))
    assert all(r.formation_energy_per_atom is None for r in result.records)


def test_cdvae_missing_cif_column(tmp_path):
    path = _write_csv(tmp_path / "x.csv", ["material_id", "energy"], [{"material_id": "1", "energy": "0"}])
    with pytest.raises(ImporterError, match="no 'cif' column"):
        import_cdvae(path)


def test_parse_list_cell_never_evaluates():
    assert parse_list_cell("[[0, 0, 0], [0.5, 0.5, 0.5]]", "p") == [[0, 0, 0], [0.5, 0.5, 0.5]]
    assert parse_list_cell("(1.0, 2.0)", "p") == [1.0, 2.0]
    assert parse_list_cell("3.1,3.1,5.0,90,90,120", "g") == [3.1, 3.1, 5.0, 90, 90, 120]
    assert parse_list_cell("0,0,0;0.5,0.5,0.5", "p") == [[0, 0, 0], [0.5, 0.5, 0.5]]
    with pytest.raises(ValueError, match="cannot parse"):
        parse_list_cell("[__import__('os').getcwd()]", "positions_fractional")


def _aflow_rows() -> list[dict]:
    return [
        {  # species from the formula, AFLOW order (alphabetical: B before Ta)
            "auid": "aflow:tab2", "pretty_formula": "TaB2", "nsites": 3, "spacegroup_relax": 191,
            "geometry": "[3.1, 3.1, 3.3, 90, 90, 120]", "enthalpy_formation_atom": -0.6,
            "positions_fractional": "[[0.3333333, 0.6666667, 0.5], [0.6666667, 0.3333333, 0.5], [0, 0, 0]]",
        },
        {  # per-site species list, no space group given
            "auid": "aflow:nacl", "pretty_formula": "NaCl", "nsites": 2, "species": '["Na", "Cl"]',
            "geometry": "3.99,3.99,3.99,60,60,60", "enthalpy_formation_atom": -2.0,
            "positions_fractional": "0,0,0;0.5,0.5,0.5",
        },
        {  # geometry with 5 numbers
            "auid": "aflow:bad-geometry", "pretty_formula": "NaCl", "nsites": 2, "spacegroup_relax": 225,
            "geometry": "[3.99, 3.99, 3.99, 60, 60]", "enthalpy_formation_atom": -2.0,
            "positions_fractional": "[[0,0,0],[0.5,0.5,0.5]]",
        },
        {  # positions do not match nsites
            "auid": "aflow:bad-positions", "pretty_formula": "NaCl", "nsites": 4, "spacegroup_relax": 225,
            "geometry": "[3.99, 3.99, 3.99, 60, 60, 60]", "enthalpy_formation_atom": -2.0,
            "positions_fractional": "[[0,0,0],[0.5,0.5,0.5]]",
        },
        {  # code in a list cell is rejected, not run
            "auid": "aflow:evil", "pretty_formula": "NaCl", "nsites": 2, "spacegroup_relax": 225,
            "geometry": "[__import__('os').getcwd()]", "enthalpy_formation_atom": -2.0,
            "positions_fractional": "[[0,0,0],[0.5,0.5,0.5]]",
        },
    ]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_aflow_csv_and_json(tmp_path, fmt):
    rows = _aflow_rows()
    if fmt == "csv":
        fields = sorted({k for row in rows for k in row})
        path = _write_csv(tmp_path / "aflow.csv", fields, rows)
    else:
        path = tmp_path / "aflow.json"
        path.write_text(json.dumps(rows))
    result = import_aflow(path)
    by_id = {r.id: r for r in result.records}
    assert set(by_id) == {"aflow:tab2", "aflow:nacl"}
    tab2 = by_id["aflow:tab2"].pymatgen
    assert [str(s) for s in tab2.species] == ["B", "B", "Ta"]
    assert by_id["aflow:tab2"].spacegroup == 191 and by_id["aflow:nacl"].spacegroup == 225
    assert by_id["aflow:nacl"].formation_energy_per_atom == -2.0
    assert tab2.lattice.abc == pytest.approx((3.1, 3.1, 3.3))
    reasons = {f.row: f.reason for f in result.failures}
    assert reasons["aflow:bad-geometry"].startswith("geometry: expected a,b,c,alpha,beta,gamma")
    assert reasons["aflow:bad-positions"].startswith("positions_fractional: shape (2, 3) but nsites = 4")
    assert reasons["aflow:evil"].startswith("geometry: cannot parse")


def test_aflow_missing_columns(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"pretty_formula": "NaCl"}]))
    with pytest.raises(ImporterError, match="missing AFLOW column"):
        import_aflow(path)


def test_directory_with_energy_table(tmp_path):
    folder = tmp_path / "structures"
    folder.mkdir()
    _nacl().to(filename=str(folder / "nacl.cif"))
    Structure(Lattice.hexagonal(3.1, 3.3), ["Ta", "B", "B"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]]).to(
        filename=str(folder / "POSCAR_tab2"), fmt="poscar"
    )
    _nacl().to(filename=str(folder / "no_energy.cif"))
    (folder / "garbage.cif").write_text("this is not a CIF\n")
    (folder / "notes.txt").write_text("ignored")
    table = _write_csv(
        tmp_path / "energies.csv", ["id", "formation_energy_per_atom"],
        [{"id": "nacl", "formation_energy_per_atom": "-2.0"}, {"id": "POSCAR_tab2", "formation_energy_per_atom": "-0.6"},
         {"id": "garbage", "formation_energy_per_atom": "0"}],
    )
    result = import_directory(folder, table)
    assert {r.id for r in result.records} == {"nacl", "POSCAR_tab2"}
    reasons = {f.row: f.reason for f in result.failures}
    assert set(reasons) == {"no_energy.cif", "garbage.cif"}
    assert reasons["no_energy.cif"].startswith("energy: no row for 'no_energy.cif'")
    without_table = import_directory(folder)
    assert len(without_table.records) == 3 and without_table.records[0].formation_energy_per_atom is None


def test_write_import_refuses_empty(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([_aflow_rows()[2]]))
    result = import_aflow(path)
    with pytest.raises(ImporterError, match="no row could be imported"):
        write_import(result, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


# ---------------------------------------------------------------------------------------------
# CLI


@pytest.fixture(scope="module")
def app():
    import crystalgen.cli as cli

    if not any(group.name == "data" for group in cli.app.registered_groups):
        cli._register_core()
    return cli.app


def test_cli_import_and_stats(app, perov_csv_with_bad_rows, tmp_path):
    runner = CliRunner()
    out = tmp_path / "perov.jsonl.gz"
    result = runner.invoke(app, ["data", "import", "cdvae", str(perov_csv_with_bad_rows), str(out)])
    assert result.exit_code == 0, result.output
    assert "imported 4 of 8 rows" in result.output and "too-big: too many sites" in result.output
    metadata, records = read_dataset(out)
    assert len(records) == 4 and metadata["counts"]["failed"] == 4 and len(metadata["failures"]) == 4
    # Re-running gives the same file content (idempotent).
    first = [r.model_dump() for r in records]
    assert runner.invoke(app, ["data", "import", "cdvae", str(perov_csv_with_bad_rows), str(out)]).exit_code == 0
    assert [r.model_dump() for r in read_dataset(out)[1]] == first

    stats = runner.invoke(app, ["data", "stats", str(out)])
    assert stats.exit_code == 0, stats.output
    assert "structures" in stats.output and "polymorph-group sizes" in stats.output
    assert "space groups" in stats.output and str(records[0].spacegroup) in stats.output


def test_cli_bad_input_exits_1(app, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "import", "aflow", str(tmp_path / "missing.csv"), str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "no such file" in result.output
    assert not (tmp_path / "o.jsonl").exists()
    not_dataset = tmp_path / "x.jsonl"
    not_dataset.write_text("hello\n")
    result = runner.invoke(app, ["data", "stats", str(not_dataset)])
    assert result.exit_code == 1 and "not a crystalgen dataset" in result.output


def _binary_file(path: Path) -> Path:
    path.write_bytes(bytes(range(256)) * 8)  # NUL bytes and invalid UTF-8, like any binary
    return path


def _header_only(path: Path, columns) -> Path:
    path.write_text(",".join(columns) + "\n")
    return path


@pytest.mark.parametrize("kind, make, message", [
    ("cdvae", lambda p: _binary_file(p / "bin.csv"), "not a UTF-8 text CSV file"),
    ("aflow", lambda p: _binary_file(p / "bin.csv"), "cannot read table"),
    ("cdvae", lambda p: _header_only(p / "head.csv", ["material_id", "cif", "formation_energy_per_atom"]),
     "no data rows (columns: ['material_id', 'cif', 'formation_energy_per_atom'])"),
    ("aflow", lambda p: _header_only(p / "head.csv", AFLOW_COLUMNS), "no data rows (columns: ['pretty_formula'"),
])
def test_cli_binary_or_header_only_input_is_named_and_writes_nothing(app, tmp_path, kind, make, message):
    source = make(tmp_path)
    out = tmp_path / "o.jsonl"
    result = CliRunner().invoke(app, ["data", "import", kind, str(source), str(out)])
    assert result.exit_code == 1, result.output
    assert f"error: {source}: {message}" in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert not out.exists()


def test_cli_binary_energy_table_is_named(app, tmp_path):
    structures = tmp_path / "structures"
    structures.mkdir()
    Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(structures / "a.cif"))
    table = _binary_file(tmp_path / "energies.csv")
    result = CliRunner().invoke(app, ["data", "import", "directory", str(structures), str(tmp_path / "o.jsonl"),
                                      "--energies", str(table)])
    assert result.exit_code == 1 and f"{table}: not a UTF-8 text CSV file" in " ".join(result.output.split())
    assert not (tmp_path / "o.jsonl").exists()
