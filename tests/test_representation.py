"""Representation: round trips on real datasets, the space-group encoding, error messages."""

from __future__ import annotations

import csv
import os
import pickle
import random
import subprocess
import sys
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from monty.serialization import loadfn
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp
from pymatgen.symmetry.groups import SpaceGroup

import pymatgen.analysis.prototypes as prototypes_module
from crystalgen import symmetry
from crystalgen.elements import FEATURE_NAMES, property_table
from crystalgen.layout import N_PROPERTIES, N_SYMOPS
from crystalgen.representation import (
    RepresentationError,
    canonical_species,
    decode,
    decode_batch,
    element_features,
    encode,
    encode_batch,
)
from crystalgen.symmetry import encode_spacegroup, spacegroup_operations
from shared_data import SHARED_DATA

CDVAE = SHARED_DATA / "cdvae"
SUBSET = 50


@lru_cache(maxsize=None)
def _cdvae(name: str) -> list[tuple[str, str]]:
    csv.field_size_limit(2**31 - 1)
    rows = []
    for split in ("val", "test"):
        with open(CDVAE / name / f"{split}.csv", newline="") as fh:
            rows += [(f"{name}/{split}/{r['material_id']}", r["cif"]) for r in csv.DictReader(fh)]
    return rows


@lru_cache(maxsize=None)
def _prototypes() -> list[tuple[str, Structure]]:
    path = Path(prototypes_module.__file__).parent / "aflow_prototypes.json.gz"
    entries = loadfn(path)
    return [(f"aflow-prototype-{i}", e["snl"].structure) for i, e in enumerate(entries) if len(e["snl"].structure) <= 60]


def _structure(item) -> Structure:
    if isinstance(item, Structure):
        return item
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(item, fmt="cif")


def _assert_round_trip(items) -> None:
    matcher = StructureMatcher()
    failures = []
    for name, raw in items:
        structure = _structure(raw)
        encoded = encode(structure, name=name)
        decoded = decode(encoded.coords_lattice, encoded.elements)
        same_species = sorted(map(str, decoded.species)) == sorted(map(str, structure.species))
        same_cell = np.allclose(decoded.lattice.parameters, structure.lattice.parameters, atol=1e-3)
        if not (same_species and same_cell and matcher.fit(structure, decoded)):
            failures.append(name)
        assert (encoded.coords_lattice[: encoded.nsites] >= 0).all()
        assert (encoded.coords_lattice[: encoded.nsites] < 1).all()
    assert failures == []


def _sample(items, k, seed=0):
    items = list(items)
    return random.Random(seed).sample(items, min(k, len(items)))


@pytest.mark.parametrize("dataset", ["carbon_24", "perov_5"])
def test_round_trip_cdvae_subset(dataset):
    _assert_round_trip(_sample(_cdvae(dataset), SUBSET))


def test_round_trip_aflow_prototypes_subset():
    _assert_round_trip(_sample(_prototypes(), SUBSET))


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["carbon_24", "perov_5"])
def test_round_trip_cdvae_all(dataset):
    _assert_round_trip(_cdvae(dataset))


@pytest.mark.slow
def test_round_trip_aflow_prototypes_all():
    _assert_round_trip(_prototypes())


def _nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_layout_rows_and_lattice_convention():
    rotated = _nacl()
    rotated.apply_operation(SymmOp.from_axis_angle_and_translation([1, 1, 0], 37))
    encoded = encode(rotated, energy=-1.5)
    x = encoded.coords_lattice
    assert encoded.nsites == 8 and encoded.formation_energy == -1.5 and encoded.spacegroup_number == 225
    assert np.all(x[8:61] == 0) and np.all(encoded.elements[8:] == 0) and np.all(encoded.properties[8:] == 0)
    lattice = x[61:64]
    # a along x, b in the xy-plane, c with positive z; lengths unchanged by the re-orientation.
    assert abs(lattice[0, 1]) < 1e-6 and abs(lattice[0, 2]) < 1e-6 and abs(lattice[1, 2]) < 1e-6
    assert lattice[2, 2] > 0
    np.testing.assert_allclose(np.linalg.norm(lattice, axis=1), [5.64] * 3, rtol=1e-5)
    # Rows sorted by Z: Na (11) before Cl (17).
    assert encoded.species == ["Na"] * 4 + ["Cl"] * 4 == canonical_species("Na4Cl4")


def test_wrap_into_unit_interval():
    s = Structure(Lattice.cubic(4.0), ["Si", "Si"], [[-1e-17, 1.0, 0.25], [1.25, -0.5, 0.0]], coords_are_cartesian=False)
    x = encode(s, spacegroup=1).coords_lattice[:2]
    assert (x >= 0).all() and (x < 1).all()
    np.testing.assert_allclose(x[1], [0.25, 0.5, 0.0], atol=1e-6)


def test_element_features_one_hot_and_properties():
    feats = element_features(["O", 26, "Fe"])
    assert feats.shape == (64, 125)
    assert feats[0, 7] == 1 and feats[1, 25] == 1 and feats[2, 25] == 1 and feats[:3, :103].sum() == 3
    np.testing.assert_array_equal(feats[1, 103:], property_table()[25])
    assert np.all(feats[3:] == 0)


def test_property_table_has_no_dead_columns():
    table = property_table()
    assert table.shape == (103, N_PROPERTIES) == (103, len(FEATURE_NAMES))
    assert np.isfinite(table).all()
    assert (np.ptp(table, axis=0) > 0).all()


def _check_operation_counts(numbers):
    for number in numbers:
        encoded = encode_spacegroup(number)
        n_ops = len(SpaceGroup.from_int_number(number).symmetry_ops)
        assert int((np.abs(encoded).sum(axis=(1, 2)) > 0).sum()) == n_ops
        assert n_ops <= N_SYMOPS
        assert len(np.unique(encoded[:n_ops].reshape(n_ops, -1), axis=0)) == n_ops  # all distinct
        np.testing.assert_array_equal(encoded[n_ops:], 0)
    assert len(spacegroup_operations(225)) == len(spacegroup_operations(227)) == 192


def test_spacegroup_operation_counts():
    # triclinic, monoclinic, rhombohedral (hexagonal setting: 9 and 36 ops), hexagonal, cubic
    _check_operation_counts([1, 2, 14, 146, 166, 191, 194, 221, 225, 227, 230])
    assert len(spacegroup_operations(146)) == 9 and len(spacegroup_operations(166)) == 36


@pytest.mark.slow
def test_spacegroup_operation_counts_all_groups():
    _check_operation_counts(range(1, 231))


def test_spacegroup_encoding_stable_across_calls_pickle_and_processes():
    first = encode_spacegroup(166).copy()
    symmetry._operations.cache_clear()
    np.testing.assert_array_equal(first, encode_spacegroup(166))
    crystal = encode(_nacl())
    clone = pickle.loads(pickle.dumps(crystal))
    np.testing.assert_array_equal(crystal.spacegroup, clone.spacegroup)
    # A fresh interpreter with another hash seed iterates pymatgen's operation set differently.
    code = "import sys,numpy as np; from crystalgen.symmetry import encode_spacegroup; sys.stdout.buffer.write(encode_spacegroup(166).tobytes())"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True).stdout
    np.testing.assert_array_equal(np.frombuffer(out, dtype=np.float32).reshape(192, 4, 4), first)


def test_errors_name_the_structure():
    big = _nacl() * (2, 2, 2)  # 64 sites
    with pytest.raises(RepresentationError, match=r"mp-big \(NaCl\): 64 sites"):
        encode(big, name="mp-big")
    heavy = Structure(Lattice.cubic(4.0), ["Rf"], [[0, 0, 0]])
    with pytest.raises(RepresentationError, match=r"Rf.*Z=104"):
        encode(heavy)
    with pytest.raises(RepresentationError, match="unknown space group"):
        encode(_nacl(), spacegroup=0, name="x")


def test_decode_rejects_degenerate():
    x = encode(_nacl()).coords_lattice.copy()
    x[61:64] = 0
    with pytest.raises(RepresentationError, match="degenerate"):
        decode(x, ["Na"])
    x[61:64] = np.nan
    with pytest.raises(RepresentationError, match="non-finite"):
        decode(x, ["Na"])


def test_batch_round_trip():
    perov = [_structure(cif) for _, cif in _cdvae("perov_5")[:3]]
    structures = [_nacl(), *perov]
    batch = encode_batch(structures, energies=[-1.0, None, 0.5, 0.2])
    assert batch["coords_lattice"].shape == (4, 64, 3) and batch["element_features"].shape == (4, 64, 125)
    assert batch["spacegroup"].shape == (4, 192, 4, 4) and batch["nsites"].tolist() == [8, 5, 5, 5]
    assert torch.isnan(batch["formation_energy"][1])
    corrupted = batch["coords_lattice"].clone()
    corrupted[2, 61:] = 0
    decoded = decode_batch(corrupted, batch["elements"])
    assert decoded[2] is None
    matcher = StructureMatcher()
    assert all(matcher.fit(a, b) for i, (a, b) in enumerate(zip(structures, decoded)) if i != 2)


def test_loading_properties_does_not_touch_mendeleev():
    code = (
        "import sys; from crystalgen.representation import element_features; element_features(['Fe', 'O']); "
        "print('mendeleev' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
