"""Crystals as fixed-size arrays, and back.

Layout of one crystal (paper §2):

* ``coords_lattice`` (64, 3): rows ``0..n-1`` fractional coordinates wrapped into [0, 1),
  rows ``n..59`` zero, row 60 zero padding, rows 61-63 the lattice vectors a, b, c in Å.
* ``elements`` (64, 103): one-hot atomic number (column Z-1) for rows ``0..n-1``, zeros elsewhere.
* ``properties`` (64, 22): :mod:`crystalgen.elements` features of each atom row, zeros elsewhere.
* ``spacegroup`` (192, 4, 4): :func:`crystalgen.symmetry.encode_spacegroup`.
* ``formation_energy`` (eV/atom, NaN when unknown) and ``nsites``.

Lattice convention: the lattice is rebuilt from its parameters (a, b, c, alpha, beta, gamma)
with **a along x, b in the xy-plane and c with positive z** (ASE's ``cellpar_to_cell``
convention). That removes the arbitrary rotation of the input cell; fractional coordinates are
unchanged by it. Sites are stably sorted by atomic number, so the element rows of a
composition are the same whatever order the input file used (see :func:`canonical_species`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from pymatgen.core import Composition, Element, Lattice, Structure

from crystalgen.elements import property_table
from crystalgen.layout import COORD_CHANNELS, ELEMENT_CHANNELS, LATTICE_ROWS, MAX_SITES, MAX_Z, N_ROWS
from crystalgen.symmetry import DEFAULT_SYMPREC, encode_spacegroup, spacegroup_number


class RepresentationError(ValueError):
    """A structure cannot be put into (or read back from) the fixed-size representation."""


@dataclass(frozen=True)
class CrystalTensors:
    """One encoded crystal (numpy arrays, float32)."""

    coords_lattice: np.ndarray  # (64, 3)
    elements: np.ndarray  # (64, 103)
    properties: np.ndarray  # (64, 22)
    spacegroup: np.ndarray  # (192, 4, 4)
    formation_energy: float  # eV/atom, NaN if unknown
    nsites: int
    spacegroup_number: int

    @property
    def element_features(self) -> np.ndarray:
        """(64, 125): one-hot and properties side by side, the network's element input."""
        return np.concatenate([self.elements, self.properties], axis=1)

    @property
    def atomic_numbers(self) -> np.ndarray:
        """(64,) int16: Z of each atom row, 0 on padding rows (what :func:`condition_batch` takes)."""
        z = np.zeros(N_ROWS, dtype=np.int16)
        z[: self.nsites] = self.elements[: self.nsites].argmax(axis=1) + 1
        return z

    @property
    def species(self) -> list[str]:
        return [Element.from_Z(int(z)).symbol for z in self.atomic_numbers[: self.nsites]]


def lattice_from_parameters(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """Row-vector lattice matrix in the a-along-x, b-in-xy-plane convention (angles in degrees)."""
    al, be, ga = np.radians([alpha, beta, gamma])
    cos_al, cos_be, cos_ga, sin_ga = np.cos(al), np.cos(be), np.cos(ga), np.sin(ga)
    c_x = c * cos_be
    c_y = c * (cos_al - cos_be * cos_ga) / sin_ga
    c_z2 = c * c - c_x * c_x - c_y * c_y
    if not np.isfinite(c_z2) or c_z2 <= 0:
        raise RepresentationError(f"lattice parameters {a, b, c, alpha, beta, gamma} do not form a cell")
    return np.array([[a, 0.0, 0.0], [b * cos_ga, b * sin_ga, 0.0], [c_x, c_y, np.sqrt(c_z2)]])


def standard_lattice(lattice: Lattice) -> np.ndarray:
    return lattice_from_parameters(*lattice.parameters)


def wrap_fractional(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates into [0, 1) (``x % 1`` can round to exactly 1.0 for tiny negatives)."""
    wrapped = np.mod(frac, 1.0)
    return np.where(wrapped >= 1.0, np.zeros_like(wrapped), wrapped)


def canonical_species(composition: Composition | str) -> list[str]:
    """Site species of a composition in the row order :func:`encode` uses (sorted by Z)."""
    comp = Composition(composition)
    species: list[str] = []
    for el in sorted(comp.elements, key=lambda e: e.Z):
        count = comp[el]
        if abs(count - round(count)) > 1e-6:
            raise RepresentationError(f"composition {comp.formula} has fractional site counts")
        species += [el.symbol] * int(round(count))
    return species


def _atomic_numbers(species: Sequence) -> np.ndarray:
    zs = []
    for sp in species:
        if isinstance(sp, (int, np.integer)):
            zs.append(int(sp))
        else:
            zs.append(Element(str(sp)).Z)
    return np.asarray(zs, dtype=int)


@lru_cache(maxsize=1)
def element_table() -> np.ndarray:
    """(104, 125) float32, read-only: row Z = one-hot(Z) + properties(Z); row 0 (padding) zeros."""
    table = np.zeros((MAX_Z + 1, ELEMENT_CHANNELS), dtype=np.float32)
    table[1:, :MAX_Z] = np.eye(MAX_Z, dtype=np.float32)
    table[1:, MAX_Z:] = property_table()
    table.setflags(write=False)
    return table


def element_features(species: Sequence) -> np.ndarray:
    """(64, 125) element rows for a list of species (symbols or atomic numbers), in that order."""
    zs = _atomic_numbers(species)
    if len(zs) > MAX_SITES:
        raise RepresentationError(f"{len(zs)} sites > {MAX_SITES}")
    if len(zs) and (zs.min() < 1 or zs.max() > MAX_Z):
        raise RepresentationError(f"atomic numbers must be in 1..{MAX_Z}, got {sorted(set(zs.tolist()))}")
    out = np.zeros((N_ROWS, ELEMENT_CHANNELS), dtype=np.float32)
    out[: len(zs)] = element_table()[zs]
    return out


def _label(structure: Structure, name: str | None) -> str:
    formula = structure.composition.reduced_formula if len(structure) else "empty"
    return f"{name} ({formula})" if name else formula


def encode(
    structure: Structure,
    energy: float | None = None,
    *,
    spacegroup: int | None = None,
    name: str | None = None,
    symprec: float = DEFAULT_SYMPREC,
) -> CrystalTensors:
    """Encode an ordered structure; ``energy`` is the formation energy per atom (eV/atom).

    ``spacegroup`` (1..230) skips symmetry analysis; otherwise spglib finds it with ``symprec`` Å.
    Raises :class:`RepresentationError` naming the structure (``name`` and formula) on failure.
    """
    label = _label(structure, name)
    n = len(structure)
    if n == 0 or n > MAX_SITES:
        raise RepresentationError(f"{label}: {n} sites, the representation holds 1..{MAX_SITES}")
    if not structure.is_ordered:
        raise RepresentationError(f"{label}: disordered (partial occupancy) structures are not supported")
    zs = np.array([site.specie.Z for site in structure])
    if zs.max() > MAX_Z:
        raise RepresentationError(f"{label}: element Z={zs.max()} > {MAX_Z}")
    try:
        number = int(spacegroup) if spacegroup is not None else spacegroup_number(structure, symprec)
        spg = encode_spacegroup(number)
    except (ValueError, TypeError) as exc:
        raise RepresentationError(f"{label}: unknown space group ({exc})") from exc

    order = np.argsort(zs, kind="stable")
    coords_lattice = np.zeros((N_ROWS, COORD_CHANNELS), dtype=np.float32)
    # Wrap after the float32 cast: 0.99999999 rounds to 1.0 in float32.
    coords_lattice[:n] = wrap_fractional(structure.frac_coords[order].astype(np.float32))
    coords_lattice[LATTICE_ROWS] = standard_lattice(structure.lattice)
    feats = element_features(zs[order])
    return CrystalTensors(
        coords_lattice=coords_lattice,
        elements=feats[:, :MAX_Z],
        properties=feats[:, MAX_Z:],
        spacegroup=spg,
        formation_energy=float("nan") if energy is None else float(energy),
        nsites=n,
        spacegroup_number=number,
    )


def _species_from_rows(species) -> list:
    """Accept symbols / atomic numbers, or a one-hot (or 125-channel) array whose zero rows are padding."""
    if isinstance(species, torch.Tensor):
        species = species.detach().cpu().numpy()
    if isinstance(species, np.ndarray) and species.ndim == 2:
        onehot = species[:, :MAX_Z]
        present = onehot.sum(axis=1) > 0
        return (onehot[present].argmax(axis=1) + 1).tolist()
    return list(species)


def decode(coords_lattice, species) -> Structure:
    """Structure from a (64, 3) array and the species of rows 0..n-1.

    ``species``: symbols or atomic numbers, or a (64, 103|125) element array (non-zero rows
    are atoms). Non-finite values or a lattice with ~zero volume raise :class:`RepresentationError`.
    """
    if isinstance(coords_lattice, torch.Tensor):
        coords_lattice = coords_lattice.detach().cpu().numpy()
    x = np.asarray(coords_lattice, dtype=np.float64)
    if x.shape != (N_ROWS, COORD_CHANNELS):
        raise RepresentationError(f"coords_lattice has shape {x.shape}, expected {(N_ROWS, COORD_CHANNELS)}")
    zs = _species_from_rows(species)
    n = len(zs)
    if not 1 <= n <= MAX_SITES:
        raise RepresentationError(f"{n} species given, expected 1..{MAX_SITES}")
    lattice, frac = x[LATTICE_ROWS], x[:n]
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        raise RepresentationError("non-finite coordinates or lattice")
    if abs(np.linalg.det(lattice)) < 1e-6:
        raise RepresentationError(f"degenerate lattice (volume {np.linalg.det(lattice):.3g} Å^3)")
    return Structure(Lattice(lattice), [Element.from_Z(z) if isinstance(z, int) else z for z in zs], wrap_fractional(frac))


# ---------------------------------------------------------------------------------------------
# Batches (torch)


@lru_cache(maxsize=None)
def _spacegroup_tensor(number: int) -> torch.Tensor:
    return torch.from_numpy(encode_spacegroup(number))


def condition_batch(atomic_numbers, spacegroups, energies) -> dict[str, torch.Tensor]:
    """The network's condition inputs for B crystals: the one builder training and sampling share.

    ``atomic_numbers``: (B, 64) integers, 0 on rows without an atom; ``spacegroups``: B numbers;
    ``energies``: B scalars (eV/atom). Returns CPU tensors ``element_features`` (B, 64, 125) with
    its views ``elements`` (one-hot) and ``properties``, ``spacegroup`` (B, 192, 4, 4),
    ``spacegroup_number``, ``formation_energy`` (float32) and ``nsites`` (atom rows).
    """
    z = torch.as_tensor(atomic_numbers).long()
    numbers = torch.as_tensor(spacegroups, dtype=torch.long)
    features = torch.from_numpy(element_table().copy())[z]
    return {
        "element_features": features,
        "elements": features[..., :MAX_Z],
        "properties": features[..., MAX_Z:],
        "spacegroup": torch.stack([_spacegroup_tensor(int(n)) for n in numbers]),
        "spacegroup_number": numbers,
        "formation_energy": torch.as_tensor(energies, dtype=torch.float32),
        "nsites": (z > 0).sum(dim=1),
    }


def encode_batch(items: Sequence, energies: Sequence[float | None] | None = None) -> dict[str, torch.Tensor]:
    """Stack structures (or already-encoded :class:`CrystalTensors`) into a batch dict.

    Keys: those of :func:`condition_batch` plus ``coords_lattice`` (B, 64, 3).
    """
    if energies is not None and len(energies) != len(items):
        raise ValueError(f"{len(items)} structures but {len(energies)} energies")
    encoded = [
        item if isinstance(item, CrystalTensors) else encode(item, None if energies is None else energies[i])
        for i, item in enumerate(items)
    ]
    batch = condition_batch(
        np.stack([e.atomic_numbers for e in encoded]),
        [e.spacegroup_number for e in encoded],
        [e.formation_energy for e in encoded],
    )
    batch["coords_lattice"] = torch.from_numpy(np.stack([e.coords_lattice for e in encoded]))
    return batch


def decode_batch(coords_lattice: torch.Tensor, species, strict: bool = False) -> list[Structure | None]:
    """Decode a (B, 64, 3) batch; ``species`` is a (B, 64, 103|125) tensor or a list of species lists.

    With ``strict=False`` a crystal that cannot be decoded (NaN, zero volume) becomes ``None``.
    """
    out: list[Structure | None] = []
    for i in range(len(coords_lattice)):
        try:
            out.append(decode(coords_lattice[i], species[i]))
        except RepresentationError:
            if strict:
                raise
            out.append(None)
    return out
