"""Refuse a potential whose energies are wrong before a campaign spends compute on it.

Why: matgl >= 2.2 reads the shipped weight files without complaint but returns energies that are
off by 0.6-3.5 eV/atom (see shared/data/README.md). So every potential is evaluated on a few
reference crystals and compared with energies measured once on a verified stack:

* a known model (name in :data:`REFERENCE_ENERGIES`) must reproduce its own references within
  ``tolerance`` (default :data:`KNOWN_MODEL_TOLERANCE`, 0.02 eV/atom: float32 noise is < 1 meV/atom,
  the known breakages are > 0.6 eV/atom);
* an unknown model (any other folder) cannot have its own references, so it is compared with
  CHGNet 0.3.0 within :data:`CROSS_MODEL_TOLERANCE` (0.6 eV/atom): correct universal PBE potentials
  agree to ~0.45 eV/atom on these crystals (MgO is the worst case), broken stacks are further off.

A passed check is remembered per (model, version, parameter fingerprint), in memory and in
``potential_checks.json`` in the ``cache_dir`` setting (default ``~/.cache/crystalgen``), so campaign
jobs do not repeat it; the fingerprint hashes the loaded parameters, so altered weights are re-checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from crystalgen.potentials.base import Potential
from crystalgen.settings import get_settings

KNOWN_MODEL_TOLERANCE = 0.02  # eV/atom
CROSS_MODEL_TOLERANCE = 0.6  # eV/atom
CROSS_MODEL_REFERENCE = "CHGNet-0.3.0"

#: energy per atom (eV) of the unrelaxed reference crystals, measured on verified stacks
#: (shared/data/README.md: matgl 2.1.2 PyG for TensorNet, matgl 2.1.2 + DGL for M3GNet, chgnet 0.4.2;
#: bcc W measured here with matgl 2.1.2 PyG / chgnet 0.4.2).
REFERENCE_ENERGIES: dict[str, dict[str, float]] = {
    "TensorNet-MatPES-PBE-v2025.1-PES": {"NaCl": -3.358, "MgO": -5.864, "TaC": -11.074, "TaB2": -9.105, "W": -12.899},
    "CHGNet-0.3.0": {"NaCl": -3.668, "MgO": -6.310, "TaC": -11.088, "TaB2": -9.076, "W": -12.760},
    "M3GNet-MP-2021.2.8-PES": {"NaCl": -3.368, "MgO": -5.951, "TaC": -11.110, "TaB2": -9.063},
    "M3GNet-MatPES-PBE-v2025.1-PES": {"NaCl": -3.369, "MgO": -5.905, "TaC": -11.093, "TaB2": -9.068},
}


class PotentialSanityError(RuntimeError):
    """The potential's energies on reference crystals are not what this model must give."""


def reference_structures() -> dict[str, Structure]:
    """Rock-salt NaCl (a=5.69), MgO (4.21), TaC (4.456), AlB2-type TaB2 (3.098/3.227), bcc W (3.172)."""

    def rock_salt(a: str, b: str, a0: float) -> Structure:
        return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a0), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])

    return {
        "NaCl": rock_salt("Na", "Cl", 5.69),
        "MgO": rock_salt("Mg", "O", 4.21),
        "TaC": rock_salt("Ta", "C", 4.456),
        "TaB2": Structure(
            Lattice.hexagonal(3.098, 3.227), ["Ta", "B", "B"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]]
        ),
        "W": Structure(Lattice.cubic(3.172), ["W", "W"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    }


def fingerprint(potential: Potential) -> str:
    """Hash of the loaded parameters (so a modified model never inherits a cached pass)."""
    digest = hashlib.sha256(potential.version.encode())
    model = getattr(potential, "model", None)
    if model is not None and hasattr(model, "state_dict"):
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


_passed: set[str] = set()


def _cache_file() -> Path:
    return get_settings().cache_dir / "potential_checks.json"


def _cache_key(potential: Potential, tolerance: float | None) -> str:
    return f"{potential.name}|{potential.version}|{fingerprint(potential)}|{tolerance}"


def _cached(key: str) -> bool:
    if key in _passed:
        return True
    try:
        return key in json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return False


def _remember(key: str, report: dict) -> None:
    _passed.add(key)
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        known = json.loads(path.read_text()) if path.exists() else {}
        known[key] = report
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass  # a read-only home only costs a repeated check


def check_potential(potential: Potential, tolerance: float | None = None, use_cache: bool = True) -> dict:
    """Raise :class:`PotentialSanityError` unless ``potential`` reproduces the reference energies.

    Returns a report ``{"model", "mode", "tolerance", "energies": {structure: (expected, obtained)}}``
    (``{"cached": True}`` when a pass was remembered).
    """
    key = _cache_key(potential, tolerance)
    if use_cache and _cached(key):
        _passed.add(key)
        return {"model": potential.name, "cached": True}
    if potential.name in REFERENCE_ENERGIES:
        mode, expected = "own references", REFERENCE_ENERGIES[potential.name]
        tol = KNOWN_MODEL_TOLERANCE if tolerance is None else tolerance
    else:
        mode, expected = f"cross-model vs {CROSS_MODEL_REFERENCE}", REFERENCE_ENERGIES[CROSS_MODEL_REFERENCE]
        tol = CROSS_MODEL_TOLERANCE if tolerance is None else tolerance
    structures = reference_structures()
    names = [n for n in expected if not potential.unsupported_elements(structures[n])]
    if not names:
        raise PotentialSanityError(f"{potential.version}: supports none of the reference crystals {list(expected)}")
    try:
        results = potential.predict([structures[n] for n in names])
        obtained = {n: r.energy_per_atom for n, r in zip(names, results, strict=True)}
    except Exception as exc:  # noqa: BLE001 - any failure here means "do not use this potential"
        raise PotentialSanityError(f"{potential.version}: evaluating the reference crystals failed: {exc}") from exc
    bad = [n for n in names if not np.isfinite(obtained[n]) or abs(obtained[n] - expected[n]) > tol]
    if bad:
        details = "; ".join(
            f"{n}: expected {expected[n]:.3f} eV/atom, got {obtained[n]:.3f} (off by {obtained[n] - expected[n]:+.3f})"
            for n in bad
        )
        raise PotentialSanityError(
            f"potential {potential.version} failed the sanity check ({mode}, tolerance {tol} eV/atom): {details}. "
            "Its energies are wrong for this library stack; see shared/data/README.md for working versions."
        )
    report = {
        "model": potential.name,
        "mode": mode,
        "tolerance": tol,
        "energies": {n: (expected[n], round(obtained[n], 4)) for n in names},
    }
    _remember(key, report)
    return report
