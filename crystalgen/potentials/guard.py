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

A model with no stored references gets its own the first time it passes the cross-model check:
its energies are recorded, with their provenance (version, parameter fingerprint, library versions,
date, how they were checked), in ``potential_references.json`` in the ``cache_dir`` setting, and
every later check holds it to them at the known-model tolerance, so a later library upgrade that
changes its energies is caught. A correct model that differs from CHGNet by more than the cross-model
tolerance is recorded by hand once, on a stack the user trusts:
``python -m crystalgen.potentials record SPEC --note "why these are right"``.

A passed check is remembered per (model, version, parameter fingerprint), in memory and in
``potential_checks.json`` in the ``cache_dir`` setting (default ``~/.cache/crystalgen``), so campaign
jobs do not repeat it; the fingerprint hashes the loaded parameters, so altered weights are re-checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
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
    # the sevenn 0.13.0 wheel's checkpoints, measured with sevenn 0.13.0 + torch 2.13.0 CPU (Python 3.11);
    # its batched path and sevenn's own SevenNetCalculator agree to < 1e-4 eV/atom. The PBE ones agree with
    # CHGNet within 0.35 eV/atom; R2SCAN energies sit on their own (meta-GGA) scale.
    "SevenNet_0__11Jul2024": {"NaCl": -3.384, "MgO": -5.973, "TaC": -11.094, "TaB2": -9.044, "W": -12.756},
    "SevenNet_0__22May2024": {"NaCl": -3.381, "MgO": -5.971, "TaC": -11.126, "TaB2": -9.115, "W": -12.907},
    "SevenNet_l3i5": {"NaCl": -3.387, "MgO": -5.975, "TaC": -11.096, "TaB2": -9.042, "W": -12.906},
    "SevenNet_MF_0-PBE": {"NaCl": -3.387, "MgO": -5.964, "TaC": -11.078, "TaB2": -9.067, "W": -12.809},
    "SevenNet_MF_0-R2SCAN": {"NaCl": -6.886, "MgO": -8.046, "TaC": -29.952, "TaB2": -21.782, "W": -51.340},
}


class PotentialSanityError(RuntimeError):
    """The potential's energies on reference crystals are not what this model must give."""


def reference_structures() -> dict[str, Structure]:
    """Rock-salt NaCl (a=5.69), MgO (4.21), TaC (4.456), AlB2-type TaB2 (3.098/3.227), bcc W (3.172).

    Fresh copies of structures built once per process (pymatgen's Fm-3m takes seconds to build).
    """
    return {name: structure.copy() for name, structure in _reference_structures().items()}


@lru_cache(maxsize=1)
def _reference_structures() -> dict[str, Structure]:

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


def references_file() -> Path:
    """Where reference energies recorded for models without stored ones live (with provenance)."""
    return get_settings().cache_dir / "potential_references.json"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, key: str, value) -> None:
    """Add ``key`` to the JSON object in ``path``, atomically (concurrent jobs never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    known = _read_json(path)
    known[key] = value
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(known, indent=1))
    os.replace(tmp, path)


def _cache_key(potential: Potential, tolerance: float | None) -> str:
    return f"{potential.name}|{potential.version}|{fingerprint(potential)}|{tolerance}"


def _references_key(potential: Potential) -> str:
    # the weights, not the library: a library upgrade that changes the energies must be compared
    return f"{potential.name}|{fingerprint(potential)}"


def _cached(key: str) -> bool:
    return key in _passed or key in _read_json(_cache_file())


def _remember(key: str, report: dict) -> None:
    _passed.add(key)
    try:
        _write_json(_cache_file(), key, report)
    except OSError:
        pass  # a read-only home only costs a repeated check


def recorded_references(potential: Potential) -> dict | None:
    """``{"energies": {structure: eV/atom}, "provenance": {...}}`` recorded for this model's weights, or None."""
    return _read_json(references_file()).get(_references_key(potential))


def _provenance(potential: Potential, how: str) -> dict:
    import platform
    from datetime import datetime, timezone

    import torch

    return {
        "version": potential.version,
        "fingerprint": fingerprint(potential),
        "how": how,
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": potential.device,
        "host": platform.node(),
    }


def _evaluate(potential: Potential, names: list[str]) -> dict[str, float]:
    structures = reference_structures()
    try:
        results = potential.predict([structures[n] for n in names])
    except Exception as exc:  # noqa: BLE001 - any failure here means "do not use this potential"
        raise PotentialSanityError(f"{potential.version}: evaluating the reference crystals failed: {exc}") from exc
    return {n: r.energy_per_atom for n, r in zip(names, results, strict=True)}


def record_references(potential: Potential, note: str) -> dict:
    """Evaluate the reference crystals and record the energies as this model's own (``note``: why to trust them)."""
    structures = reference_structures()
    names = [n for n in structures if not potential.unsupported_elements(structures[n])]
    obtained = _evaluate(potential, names)
    record = {"energies": {n: round(e, 4) for n, e in obtained.items()},
              "provenance": _provenance(potential, f"recorded by hand: {note}")}
    _write_json(references_file(), _references_key(potential), record)
    return record


def _expectation(potential: Potential, tolerance: float | None) -> tuple[str, dict[str, float], float, dict | None]:
    """(mode, expected energies, tolerance, recorded provenance) the check holds ``potential`` to."""
    if potential.name in REFERENCE_ENERGIES:
        tol = KNOWN_MODEL_TOLERANCE if tolerance is None else tolerance
        return "own references", REFERENCE_ENERGIES[potential.name], tol, None
    if recorded := recorded_references(potential):
        tol = KNOWN_MODEL_TOLERANCE if tolerance is None else tolerance
        when = recorded["provenance"].get("recorded_at", "?")
        return f"own references recorded {when} in {references_file()}", recorded["energies"], tol, recorded
    tol = CROSS_MODEL_TOLERANCE if tolerance is None else tolerance
    return f"cross-model vs {CROSS_MODEL_REFERENCE}", REFERENCE_ENERGIES[CROSS_MODEL_REFERENCE], tol, None


def check_potential(potential: Potential, tolerance: float | None = None, use_cache: bool = True) -> dict:
    """Raise :class:`PotentialSanityError` unless ``potential`` reproduces the reference energies.

    Returns a report ``{"model", "mode", "tolerance", "energies": {structure: (expected, obtained)}}``
    (``{"cached": True}`` when a pass was remembered; ``"recorded": path`` when a cross-model pass
    recorded the model's own references).
    """
    key = _cache_key(potential, tolerance)
    if use_cache and _cached(key):
        _passed.add(key)
        return {"model": potential.name, "cached": True}
    mode, expected, tol, _ = _expectation(potential, tolerance)
    structures = reference_structures()
    names = [n for n in expected if n in structures and not potential.unsupported_elements(structures[n])]
    if not names:
        raise PotentialSanityError(f"{potential.version}: supports none of the reference crystals {list(expected)}")
    obtained = _evaluate(potential, names)
    bad = [n for n in names if not np.isfinite(obtained[n]) or abs(obtained[n] - expected[n]) > tol]
    if bad:
        details = "; ".join(
            f"{n}: expected {expected[n]:.3f} eV/atom, got {obtained[n]:.3f} (off by {obtained[n] - expected[n]:+.3f})"
            for n in bad
        )
        advice = "Its energies are wrong for this library stack; see shared/data/README.md for working versions."
        if mode.startswith("cross-model"):
            advice += (f" If this model is right and only differs from {CROSS_MODEL_REFERENCE} on these crystals, "
                       "record its own reference energies once, on a stack you trust: python -m crystalgen.potentials "
                       f"record <spec> --note '<why they are right>' (writes {references_file()})")
        raise PotentialSanityError(
            f"potential {potential.version} failed the sanity check ({mode}, tolerance {tol} eV/atom): {details}. {advice}"
        )
    report = {
        "model": potential.name,
        "mode": mode,
        "tolerance": tol,
        "energies": {n: (expected[n], round(obtained[n], 4)) for n in names},
    }
    if mode.startswith("cross-model"):
        # first pass of a model with no references of its own: from now on it is held to these
        how = f"first sanity check: within {tol} eV/atom of {CROSS_MODEL_REFERENCE}"
        try:
            _write_json(references_file(), _references_key(potential),
                        {"energies": {n: round(e, 4) for n, e in obtained.items()}, "provenance": _provenance(potential, how)})
            report["recorded"] = str(references_file())
        except OSError:
            pass  # read-only cache: the cross-model check simply runs again next time
    _remember(key, report)
    return report
