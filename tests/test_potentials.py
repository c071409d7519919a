"""The potential layer: real weights, batched predictions, units, the sanity guard and the loader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgen.potentials import (
    DEFAULT_POTENTIAL,
    PotentialSanityError,
    check_potential,
    checked_potential,
    load_potential,
    reference_structures,
    resolve_potential,
)
from crystalgen.potentials.guard import REFERENCE_ENERGIES
from crystalgen.potentials.matgl_potential import MatglPotential
from crystalgen.potentials.registry import embedded_model_dir
from crystalgen.settings import get_settings
from shared_data import SHARED_DATA

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_check_cache(tmp_path, crystalgen_env):
    crystalgen_env(cache_dir=tmp_path / "cache")


@pytest.fixture(scope="module")
def default_potential():
    return load_potential()


def test_default_potential_is_embedded_tensornet_with_licence(default_potential):
    folder = embedded_model_dir(DEFAULT_POTENTIAL)
    assert folder is not None and (folder / "LICENSE").read_text().startswith("BSD 3-Clause")
    assert default_potential.name == DEFAULT_POTENTIAL
    assert "matgl 2.1.2" in default_potential.version


def test_batched_prediction_equals_one_by_one(default_potential):
    structures = list(reference_structures().values())
    structures[1] = structures[1].copy()
    structures[1].perturb(0.1, min_distance=0.05, seed=0)  # non-zero forces
    batched = default_potential.predict(structures)
    for structure, result in zip(structures, batched, strict=True):
        single = default_potential.predict([structure])[0]
        assert result.forces.shape == (len(structure), 3)
        assert result.energy == pytest.approx(single.energy, abs=1e-4)
        np.testing.assert_allclose(result.forces, single.forces, atol=1e-4)
        np.testing.assert_allclose(result.stress, single.stress, atol=1e-6)
    assert np.abs(batched[1].forces).max() > 0.05


def test_reference_energies_and_stress_units(default_potential):
    refs = REFERENCE_ENERGIES[DEFAULT_POTENTIAL]
    structures = reference_structures()
    results = dict(zip(structures, default_potential.predict(list(structures.values())), strict=True))
    for name, expected in refs.items():
        assert results[name].energy_per_atom == pytest.approx(expected, abs=2e-3)
    # stress = (1/V) dE/dstrain in eV/Å^3: compare with a finite difference of E under isotropic strain
    w = structures["W"]
    delta = 0.002
    energies = []
    for sign in (1, -1):
        strained = w.copy()
        strained.scale_lattice(w.volume * (1 + sign * delta) ** 3)
        energies.append(default_potential.predict([strained])[0].energy)
    de_dstrain = (energies[0] - energies[1]) / (2 * delta)
    assert np.trace(results["W"].stress) * w.volume == pytest.approx(de_dstrain, rel=0.05, abs=2e-3)


def test_default_potential_passes_the_guard_and_is_cached(default_potential):
    report = check_potential(default_potential, use_cache=False)  # earlier tests may have passed it
    assert report["mode"] == "own references"
    assert set(report["energies"]) == set(REFERENCE_ENERGIES[DEFAULT_POTENTIAL])
    assert check_potential(default_potential) == {"model": DEFAULT_POTENTIAL, "cached": True}


def test_guard_refuses_a_model_with_a_reinitialised_layer():
    broken = MatglPotential(embedded_model_dir(DEFAULT_POTENTIAL), name=DEFAULT_POTENTIAL)
    torch.manual_seed(0)
    for layer in broken.model.model.final_layer.modules():  # a freshly initialised read-out
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    with pytest.raises(PotentialSanityError) as err:
        check_potential(broken)
    message = str(err.value)
    assert DEFAULT_POTENTIAL in message and "expected -3.358 eV/atom, got" in message and "NaCl" in message


def test_guard_on_unknown_model_folder_uses_cross_model_check(tmp_path):
    import shutil

    folder = tmp_path / "my-tensornet"
    shutil.copytree(embedded_model_dir(DEFAULT_POTENTIAL), folder)
    custom = load_potential(folder)
    assert custom.name == "my-tensornet"
    with pytest.raises(PotentialSanityError, match="cross-model vs CHGNet-0.3.0"):
        check_potential(custom, tolerance=0.1)  # TensorNet and CHGNet differ by up to ~0.45 eV/atom
    report = check_potential(custom)
    assert report["mode"].startswith("cross-model") and report["recorded"]
    # from then on it is held to its own energies, recorded on the first pass
    again = check_potential(custom, use_cache=False)
    assert again["mode"].startswith("own references recorded") and again["tolerance"] == 0.02
    assert again["energies"]["NaCl"][0] == pytest.approx(REFERENCE_ENERGIES[DEFAULT_POTENTIAL]["NaCl"], abs=2e-3)


def test_chgnet_potential_passes_its_guard():
    chgnet = load_potential("CHGNet-0.3.0")
    assert "chgnet" in chgnet.version
    report = check_potential(chgnet)
    assert report["energies"]["TaB2"][1] == pytest.approx(-9.076, abs=2e-3)


def test_loader_errors_name_the_problem(crystalgen_env):
    with pytest.raises(ValueError, match="unknown potential 'NoSuchModel'"):
        load_potential("NoSuchModel")
    crystalgen_env(matgl_models=None)
    with pytest.raises(ValueError, match="not available offline"):
        load_potential("M3GNet-MP-2021.2.8-PES")
    with pytest.raises(ValueError, match="unknown CHGNet version"):
        load_potential("CHGNet-9.9")


def test_m3gnet_weights_are_refused_on_this_stack(crystalgen_env):
    """The DGL-era M3GNet files cannot give correct energies with matgl 2.1.2 PyG: loading must say so."""
    shared = SHARED_DATA / "matgl" / "pretrained_models"
    if not (shared / "M3GNet-MP-2021.2.8-PES").is_dir():
        pytest.skip("shared M3GNet weights not present")
    crystalgen_env(matgl_models=os.pathsep.join(["/no/such/folder", str(shared)]))
    try:
        potential = load_potential("M3GNet-MP-2021.2.8-PES")
    except ValueError as exc:
        assert "MATGL_BACKEND=DGL" in str(exc)
    else:  # a stack that can load them must still pass the guard before use
        check_potential(potential)


def test_unsupported_element_is_named(default_potential):
    structure = Structure(Lattice.cubic(3.5), ["Am"], [[0, 0, 0]])
    with pytest.raises(ValueError, match="Am"):
        default_potential.predict([structure])


def test_dgl_backend_without_dgl_says_which_stack_it_needs(monkeypatch):
    import importlib.util

    import matgl

    if importlib.util.find_spec("dgl") is not None:
        pytest.skip("dgl is installed here: `make test-dgl` covers this backend")
    monkeypatch.setattr(matgl.config, "BACKEND", "DGL")
    with pytest.raises(ValueError, match=r"MATGL_BACKEND=DGL but dgl cannot be imported .*dgl 2\.1\.0 with torch<=2\.2\.1"):
        load_potential(DEFAULT_POTENTIAL)


def test_device_resolution_names_bad_values(crystalgen_env):
    from crystalgen.potentials.base import resolve_device

    crystalgen_env(potential_device=None)
    assert resolve_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    crystalgen_env(potential_device="CPU")
    assert resolve_device() == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="'gpu0' is not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda:1' asked for, but this process sees no CUDA GPU"):
            load_potential(device="cuda:1")


def test_potential_settings_come_from_env_and_the_settings_file(tmp_path, crystalgen_env):
    (tmp_path / "settings.yaml").write_text("matgl_models: [/models/a, ~/models/b]\ntorch_threads: 3\n")
    crystalgen_env(config=tmp_path / "settings.yaml", potential_device=None, matgl_models=None, torch_threads=None)
    settings = get_settings()
    assert settings.matgl_models == [Path("/models/a"), Path("~/models/b").expanduser()]
    assert (settings.torch_threads, settings.potential_device) == (3, "auto")
    crystalgen_env(matgl_models=os.pathsep.join(["/x", "", "/y"]), potential_device="cuda:1", cache_dir="")
    settings = get_settings()
    assert settings.matgl_models == [Path("/x"), Path("/y")] and settings.potential_device == "cuda:1"
    assert settings.cache_dir == Path("~/.cache/crystalgen").expanduser()  # empty: the default


def test_resolve_and_checked_potential(crystalgen_env, tmp_path):
    crystalgen_env(config=tmp_path / "none.yaml", potential=None)
    assert resolve_potential(None) == DEFAULT_POTENTIAL
    assert resolve_potential("CHGNet-0.3.0") == "CHGNet-0.3.0"
    crystalgen_env(potential="some/model-folder")
    assert resolve_potential(None) == "some/model-folder" and resolve_potential("W") == "W"
    with pytest.raises(ValueError, match="unknown potential 'some/model-folder'"):
        checked_potential(None)
    crystalgen_env(potential=None)
    potential = checked_potential(None)
    assert potential.name == DEFAULT_POTENTIAL and checked_potential(DEFAULT_POTENTIAL) is potential


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_predictions_match_cpu(default_potential):
    structures = list(reference_structures().values())
    structures[0] = structures[0].copy()
    structures[0].perturb(0.1, min_distance=0.05, seed=0)
    gpu = load_potential(device="cuda")
    assert gpu.device == "cuda" and next(gpu.model.parameters()).is_cuda
    cpu = load_potential(device="cpu")
    for on_gpu, on_cpu in zip(gpu.predict(structures), cpu.predict(structures), strict=True):
        assert on_gpu.energy_per_atom == pytest.approx(on_cpu.energy_per_atom, abs=1e-4)
        np.testing.assert_allclose(on_gpu.forces, on_cpu.forces, atol=1e-3)
        np.testing.assert_allclose(on_gpu.stress, on_cpu.stress, atol=1e-5)
