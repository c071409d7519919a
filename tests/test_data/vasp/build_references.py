"""Rebuild the fake-VASP reference folders used by tests/test_vasp_relax.py (run once; outputs are committed).

No VASP runs here. Each folder is what atomate2's ``fake_run_vasp`` expects:
``inputs/{INCAR,POSCAR,POTCAR.spec}`` (what our RelaxMaker must write) and
``outputs/{vasprun.xml.gz,OUTCAR.gz,CONTCAR.gz}`` (what "VASP" returns). The outputs are SYNTHETIC:
ASE's sample vasprun.xml (diamond, VASP 6.3.0) re-written for our structure, with the total energy
from the shipped TensorNet potential; OUTCAR is ASE's sample OUTCAR. They exist to test input
writing and output parsing, not physics. ``references.json`` holds the elemental references with
the same synthetic energies, declared with the same energy source as our VASP settings, and the
``reference_*`` folders are the "VASP" relaxations of those phases (``references.recompute``).

    python tests/test_data/vasp/build_references.py
"""

from __future__ import annotations

import gzip
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import ase
import numpy as np
from pymatgen.core import Element, Lattice, Structure
from pymatgen.io.vasp import Incar, Poscar

HERE = Path(__file__).parent
ASE_VASP = Path(ase.__file__).parent / "test" / "testdata" / "vasp"
INCAR = {"ENCUT": 500, "EDIFF": 1e-05, "EDIFFG": -0.01, "GGA": "Pe"}
POTCARS = {"Ta": "Ta_pv", "W": "W_sv"}

STRUCTURES = {
    "TaW_B2": Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.22), ["Ta", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "TaW_tP2": Structure(Lattice.tetragonal(3.1, 3.45), ["Ta", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
}
ELEMENTS = {
    "Ta": Structure(Lattice.cubic(3.31), ["Ta", "Ta"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "W": Structure(Lattice.cubic(3.17), ["W", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
}


def _vectors(parent: ET.Element, name: str, rows) -> None:
    varray = parent.find(f"varray[@name='{name}']")
    for child in list(varray):
        varray.remove(child)
    for row in rows:
        v = ET.SubElement(varray, "v", {"type": "int"} if isinstance(row, int) else {})
        v.text = f" {row:8d} " if isinstance(row, int) else " " + " ".join(f"{x:16.8f}" for x in row) + " "


def _set_structure(node: ET.Element, structure: Structure) -> None:
    crystal = node.find("crystal")
    _vectors(crystal, "basis", structure.lattice.matrix)
    crystal.find("i[@name='volume']").text = f" {structure.volume:16.8f} "
    _vectors(crystal, "rec_basis", structure.lattice.reciprocal_lattice_crystallographic.matrix)
    _vectors(node, "positions", structure.frac_coords)


def vasprun_xml(structure: Structure, energy: float) -> bytes:
    tree = ET.parse(ASE_VASP / "vasprun_pstress.xml")
    root = tree.getroot()
    n, symbols = len(structure), [site.specie.symbol for site in structure]
    types = list(dict.fromkeys(symbols))
    info = root.find("atominfo")
    info.find("atoms").text = f" {n:7d} "
    info.find("types").text = f" {len(types):7d} "
    atoms = info.find("array[@name='atoms']/set")
    for child in list(atoms):
        atoms.remove(child)
    for s in symbols:
        rc = ET.SubElement(atoms, "rc")
        ET.SubElement(rc, "c").text = f"{s:2s}"
        ET.SubElement(rc, "c").text = f" {types.index(s) + 1:3d}"
    atomtypes = info.find("array[@name='atomtypes']/set")
    for child in list(atomtypes):
        atomtypes.remove(child)
    for t in types:
        rc = ET.SubElement(atomtypes, "rc")
        for text in (f" {symbols.count(t):3d}", f"{t:2s}", f" {Element(t).atomic_mass:16.8f}", "  5.00000000",
                     f"  PAW_PBE {POTCARS.get(t, t)} 06Sep2000"):
            ET.SubElement(rc, "c").text = text
    incar = root.find("incar")  # what VASP echoes of the INCAR it read (atomate2 reads it from here)
    for child in list(incar):
        incar.remove(child)
    for key, value in INCAR.items():
        attrs = {"type": "string"} if isinstance(value, str) else {}
        ET.SubElement(incar, "i", {**attrs, "name": key}).text = f" {value}"
    for item in root.iter("i"):
        if item.get("name") == "ENCUT":
            item.text = f" {INCAR['ENCUT']:16.8f}"
    for node in root.iter("structure"):
        _set_structure(node, structure)
    _vectors(root.find("primitive_cell"), "primitive_index", list(range(1, n + 1)))
    calc = root.find("calculation")
    _vectors(calc, "forces", np.zeros((n, 3)))
    _vectors(calc, "stress", np.zeros((3, 3)))
    for energy_node in calc.iter("energy"):
        for key in ("e_fr_energy", "e_wo_entrp", "e_0_energy"):
            if (item := energy_node.find(f"i[@name='{key}']")) is not None:
                item.text = f" {energy:16.8f} "
    return b'<?xml version="1.0" encoding="ISO-8859-1"?>\n' + ET.tostring(root, encoding="ISO-8859-1").split(b"?>", 1)[1]


def build(name: str, structure: Structure, energy_per_atom: float) -> None:
    write_fake_vasp_folder(HERE / name, structure, energy_per_atom)


def write_fake_vasp_folder(folder: Path, structure: Structure, energy_per_atom: float) -> None:
    """A reference folder for atomate2's fake_run_vasp: what our RelaxMaker writes and what "VASP" returns."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "inputs").mkdir(parents=True)
    (folder / "outputs").mkdir()
    Incar(INCAR).write_file(folder / "inputs" / "INCAR")
    Poscar(structure).write_file(folder / "inputs" / "POSCAR")
    types = list(dict.fromkeys(site.specie.symbol for site in structure))
    (folder / "inputs" / "POTCAR.spec").write_text("\n".join(POTCARS.get(t, t) for t in types) + "\n")
    outputs = {
        "vasprun.xml.gz": vasprun_xml(structure, energy_per_atom * len(structure)),
        "OUTCAR.gz": (ASE_VASP / "OUTCAR_example_1").read_bytes(),
        "CONTCAR.gz": Poscar(structure).get_str().encode(),
    }
    for fname, data in outputs.items():
        with gzip.GzipFile(folder / "outputs" / fname, "wb", mtime=0) as fh:
            fh.write(data)


def main() -> None:
    from crystalgen.potentials import load_potential

    potential = load_potential()
    energies = {name: r.energy_per_atom for name, r in
                zip([*STRUCTURES, *ELEMENTS], potential.predict([*STRUCTURES.values(), *ELEMENTS.values()]), strict=True)}
    for name, structure in STRUCTURES.items():
        build(name, structure, energies[name])
    for name, structure in ELEMENTS.items():
        build(f"reference_{name}", structure, energies[name])
    references = {
        "description": "Synthetic test references (TensorNet energies declared as PBE/500 eV VASP); tests only.",
        "energy_source": {"engine": "vasp", "GGA": "PE", "ENCUT": 500.0, "LDAU": False},
        "phases": [{"name": name, "structure": s.as_dict(), "energy_per_atom": round(energies[name], 6)}
                   for name, s in ELEMENTS.items()],
    }
    (HERE / "references.json").write_text(json.dumps(references, indent=1))
    print({k: round(v, 4) for k, v in energies.items()})


if __name__ == "__main__":
    main()
