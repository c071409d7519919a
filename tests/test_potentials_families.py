"""Potential specs beyond matgl/CHGNet: the grammar, SevenNet from its wheel, any ASE calculator, no downloads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.calculators.lj import LennardJones
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from crystalgen.potentials import PotentialSanityError, check_potential, load_potential, reference_structures
from crystalgen.potentials.guard import recorded_references
from crystalgen.potentials.offline import DownloadRequired
from crystalgen.potentials.registry import parse_spec
from crystalgen.relax import relax_structures
from test_campaign_schema import base, cli, write
from test_relax import _unrelaxed

torch.set_num_threads(1)
ARGON_SIGMA = 3.405  # Å, Lennard-Jones argon


def lennard_jones_argon():
    """The calculator the generic-ASE test names: ``ase:test_potentials_families:lennard_jones_argon``."""
    calc = lennard_jones_any()
    calc.crystalgen_elements = {"Ar"}
    return calc


def lennard_jones_any():
    """Argon's Lennard-Jones for every element: runs on anything, right about nothing but argon."""
    return LennardJones(sigma=ARGON_SIGMA, epsilon=0.0103, rc=3 * ARGON_SIGMA, smooth=True)


@pytest.fixture(autouse=True)
def _private_check_cache(tmp_path, crystalgen_env):
    crystalgen_env(cache_dir=tmp_path / "cache")


def _ase_fire(structure: Structure, calculator, fmax: float, steps: int) -> tuple[float, np.ndarray]:
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calculator
    FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=fmax, steps=steps)
    return atoms.get_potential_energy() / len(atoms), atoms.cell.cellpar()


def test_spec_grammar_parses_families_and_legacy_forms():
    assert parse_spec("sevenn:7net-mf-0:PBE") == ("sevenn", "7net-mf-0:PBE")
    assert parse_spec("ase:ase.calculators.emt:EMT") == ("ase", "ase.calculators.emt:EMT")
    assert parse_spec("MACE:/models/a.model") == ("mace", "/models/a.model")
    assert parse_spec("CHGNet-0.2.0") == ("chgnet", "0.2.0") and parse_spec("chgnet") == ("chgnet", "")
    assert parse_spec("TensorNet-MatPES-PBE-v2025.1-PES") == ("matgl", "TensorNet-MatPES-PBE-v2025.1-PES")
    assert parse_spec("/models/my:folder") == ("matgl", "/models/my:folder")  # not a family prefix


def test_generic_ase_path_relaxes_a_cell_with_a_test_calculator():
    potential = load_potential("ase:test_potentials_families:lennard_jones_argon")
    assert potential.name == "ase:test_potentials_families:lennard_jones_argon" and "LennardJones" in potential.version
    fcc = Structure(Lattice.cubic(5.6), ["Ar"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.52]])
    sheared = Structure(Lattice.from_parameters(3.9, 3.9, 3.9, 62, 60, 58), ["Ar"], [[0, 0, 0]])  # fcc primitive
    salt = reference_structures()["NaCl"]
    results = relax_structures([fcc, sheared, salt], potential, fmax=0.01, max_steps=400, progress=False)
    for structure, result in zip([fcc, sheared], results[:2], strict=True):
        assert result.converged, result.error
        ase_energy, ase_cellpar = _ase_fire(structure, lennard_jones_argon(), fmax=0.01, steps=400)
        assert result.energy_per_atom == pytest.approx(ase_energy, abs=1e-4)
        np.testing.assert_allclose(result.structure.lattice.parameters[:3], ase_cellpar[:3], rtol=0.01)
        assert result.energy_per_atom < potential.predict([structure])[0].energy_per_atom - 1e-3
    # relaxed into fcc: nearest neighbours at ~2^(1/6) sigma (slightly less: second shells attract)
    nearest = results[0].structure.distance_matrix[0][1:].min()
    assert 1.0 * ARGON_SIGMA < nearest < 2 ** (1 / 6) * ARGON_SIGMA
    assert not results[2].ok and "does not support element(s) ['Cl', 'Na']" in results[2].error


def test_ase_specs_name_what_is_wrong():
    with pytest.raises(ValueError, match="expected ase:<module>:<factory>"):
        load_potential("ase:ase.calculators.emt")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        load_potential("ase:no_such_module:X")
    with pytest.raises(ValueError, match="returned float, not an ASE calculator"):
        load_potential("ase:math:pi.__float__")


def test_model_without_stored_references_records_its_own_with_provenance(tmp_path):
    """First check: cross-model vs CHGNet, then the energies are recorded; later checks hold it to them."""
    potential = load_potential("ase:test_potentials_families:lennard_jones_any")
    with pytest.raises(PotentialSanityError) as err:  # no universal potential: refused, with the way out
        check_potential(potential)
    assert "python -m crystalgen.potentials record" in str(err.value)
    assert recorded_references(potential) is None
    from crystalgen.potentials.guard import record_references

    record = record_references(potential, note="test: argon's pair potential on purpose")
    assert record["provenance"]["how"].startswith("recorded by hand: test") and record["provenance"]["torch"]
    report = check_potential(potential, use_cache=False)
    assert report["mode"].startswith("own references recorded") and report["tolerance"] == 0.02
    assert set(report["energies"]) == set(record["energies"])


def test_spec_that_needs_a_download_exits_1_naming_the_file(tmp_path, settings):
    from crystalgen.db import mongo_client

    model = tmp_path / "models" / "mace-mpa-0-medium.model"
    for spec, named in [(f"mace:{model}", str(model)),
                        ("orb:orb-v3-conservative-inf-omat", "orb:orb-v3-conservative-inf-omat:/path/to/weights.ckpt"),
                        ("mattersim:MatterSim-v1.0.0-5M.pth", "MatterSim-v1.0.0-5M.pth")]:
        data = base(tmp_path)
        data["prerelax"] = {"potential": spec}
        result = CliRunner().invoke(cli(), ["campaign", "run", str(write(tmp_path, data))])
        assert result.exit_code == 1, result.output
        output = " ".join(result.output.split())  # rich wraps long lines
        assert "prerelax.potential" in output and named in output and "never downloads" in output, output
        assert "Traceback" not in output
    assert not model.exists()
    assert mongo_client()[settings.database].list_collection_names() == []


def test_torchsim_relaxer_is_refused_before_anything_is_written(tmp_path, settings):
    """prerelax.relaxer: torchsim with a model TorchSim does not wrap (or no TorchSim installed): exit 1."""
    from crystalgen.db import mongo_client

    data = base(tmp_path)
    data["prerelax"] = {"relaxer": "torchsim"}  # the default TensorNet
    result = CliRunner().invoke(cli(), ["campaign", "run", str(write(tmp_path, data))])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "prerelax.potential" in output and "relaxer torchsim" in output, output
    assert mongo_client()[settings.database].list_collection_names() == []


# --- SevenNet: the optional extra (`make test` installs it) -------------------------------------------------

needs_sevenn = pytest.mark.skipif(importlib.util.find_spec("sevenn") is None,
                                  reason="SevenNet is the optional extra crystalgen[sevenn]; make test installs it")


@pytest.fixture(scope="module")
def sevennet():
    return load_potential("sevenn:7net-0", device="cpu")


@needs_sevenn
def test_sevennet_0_loads_from_the_wheel_and_passes_the_guard(sevennet):
    import sevenn

    assert sevennet.name == "SevenNet_0__11Jul2024" and "sevenn 0.13.0" in sevennet.version
    assert sevennet.checkpoint.is_relative_to(Path(sevenn.__file__).parent)
    report = check_potential(sevennet, use_cache=False)
    assert report["mode"] == "own references" and len(report["energies"]) == 5


@needs_sevenn
def test_sevennet_batch_equals_sevenns_own_calculator(sevennet):
    from pymatgen.io.ase import AseAtomsAdaptor
    from sevenn.calculator import SevenNetCalculator

    calculator = SevenNetCalculator("7net-0", device="cpu")
    structures = _unrelaxed()
    for structure, result in zip(structures, sevennet.predict(structures), strict=True):
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = calculator
        assert result.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-4)
        np.testing.assert_allclose(result.forces, atoms.get_forces(), atol=1e-4)
        np.testing.assert_allclose(result.stress, atoms.get_stress(voigt=False), atol=1e-6)
    assert np.abs(sevennet.predict(structures[1:2])[0].forces).max() > 0.05  # a perturbed cell: real forces


@needs_sevenn
def test_sevennet_relaxes_the_relaxer_cells_like_ase_fire(sevennet):
    """Batched FIRE with SevenNet-0 vs ASE FIRE + FrechetCellFilter with sevenn's calculator: < 5 meV/atom."""
    from sevenn.calculator import SevenNetCalculator

    structures = _unrelaxed()
    results = relax_structures(structures, sevennet, fmax=0.05, max_steps=300, progress=False)
    for structure, result in zip(structures, results, strict=True):
        assert result.ok and result.converged, result.error
        ase_energy, ase_cellpar = _ase_fire(structure, SevenNetCalculator("7net-0", device="cpu"), 0.05, 300)
        assert result.energy_per_atom == pytest.approx(ase_energy, abs=0.005)
        np.testing.assert_allclose(result.structure.lattice.parameters[:3], ase_cellpar[:3], rtol=0.01)


@needs_sevenn
def test_sevennet_names_that_would_download_are_refused(tmp_path):
    with pytest.raises(DownloadRequired, match=r"checkpoint_sevennet_omat\.pth .*sevenn would download it"):
        load_potential("sevenn:7net-omat")
    with pytest.raises(DownloadRequired, match="no such checkpoint file"):
        load_potential(f"sevenn:{tmp_path / 'mine.pth'}")
    with pytest.raises(ValueError, match="needs a modal .* one of R2SCAN, PBE"):
        load_potential("sevenn:7net-mf-0")
    with pytest.raises(ValueError, match="unknown SevenNet model 'no-such'"):
        load_potential("sevenn:no-such")
