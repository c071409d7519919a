"""Dataset file -> composition-disjoint splits -> compact in-memory tensors for training.

Structures are encoded once with :func:`crystalgen.representation.encode`. To keep a large
dataset in memory, a split stores atomic numbers (not the 64x125 element features) and space
group numbers (not the 192x4x4 operations); :meth:`TensorSet.batch` expands them with
:func:`~crystalgen.representation.condition_batch`, the builder sampling uses too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from pymatgen.core import Structure

from crystalgen.data.dataset import DatasetRecord, read_dataset
from crystalgen.data.splits import polymorph_groups, split_by_formula
from crystalgen.layout import COORD_CHANNELS, MAX_SITES, N_ROWS
from crystalgen.representation import RepresentationError, condition_batch, encode
from crystalgen.symmetry import DEFAULT_SYMPREC, standard_primitive

SPLITS = ("train", "val", "test")


@dataclass
class TensorSet:
    """Encoded structures of one split (CPU tensors), plus the records they came from."""

    tensors: dict[str, torch.Tensor]
    records: list[DatasetRecord] = field(default_factory=list)
    init_records: list[DatasetRecord] = field(default_factory=list)  # modification pairs: x0

    def __len__(self) -> int:
        return len(self.tensors["nsites"])

    def batch(self, indices: Sequence[int], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        t = self.tensors
        out = condition_batch(t["atomic_numbers"][idx], t["spacegroup_number"][idx], t["formation_energy"][idx])
        for key in ("coords_lattice", "init_coords_lattice", "init_nsites", "energy_diff"):
            if key in t:
                out[key] = t[key][idx]
        return {k: v.to(device, non_blocking=True) for k, v in out.items()}


@dataclass
class TrainingData:
    train: TensorSet
    val: TensorSet
    test: TensorSet
    scalar_key: str  # 'formation_energy' (generation) or 'energy_diff' (modification)

    def split(self, name: str) -> TensorSet:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        return getattr(self, name)


def _in_frame(record: DatasetRecord, frame: str) -> tuple[Structure, int]:
    if frame == "as-given":
        return record.pymatgen, record.spacegroup
    try:
        return standard_primitive(record.pymatgen, DEFAULT_SYMPREC)
    except ValueError as exc:
        raise RepresentationError(f"{record.id}: {exc}") from exc


def encode_records(
    records: Sequence[DatasetRecord], log: Callable[[str], None] = print, frame: str = "as-given"
) -> tuple[dict, list[DatasetRecord]]:
    """Encode records (in ``frame``, see :class:`~crystalgen.config.DataConfig`); structures that
    cannot be represented are skipped with a count in the log."""
    rows: dict[str, list] = {k: [] for k in ("coords_lattice", "atomic_numbers", "spacegroup_number", "formation_energy", "nsites")}
    kept, failures = [], {}
    for record in records:
        try:
            structure, spacegroup = _in_frame(record, frame)
            enc = encode(structure, record.formation_energy_per_atom, spacegroup=spacegroup, name=record.id)
        except RepresentationError as exc:
            failures[str(exc).split(": ", 1)[-1]] = failures.get(str(exc).split(": ", 1)[-1], 0) + 1
            continue
        rows["coords_lattice"].append(torch.from_numpy(enc.coords_lattice))
        rows["atomic_numbers"].append(torch.from_numpy(enc.atomic_numbers))
        rows["spacegroup_number"].append(enc.spacegroup_number)
        rows["formation_energy"].append(enc.formation_energy)
        rows["nsites"].append(enc.nsites)
        kept.append(record)
    if failures:
        log(f"skipped {sum(failures.values())} structures that cannot be encoded: {failures}")
    tensors = {
        "coords_lattice": torch.stack(rows["coords_lattice"]) if kept else torch.zeros(0, N_ROWS, COORD_CHANNELS),
        "atomic_numbers": torch.stack(rows["atomic_numbers"]) if kept else torch.zeros(0, N_ROWS, dtype=torch.int16),
        "spacegroup_number": torch.tensor(rows["spacegroup_number"], dtype=torch.long),
        "formation_energy": torch.tensor(rows["formation_energy"], dtype=torch.float32),
        "nsites": torch.tensor(rows["nsites"], dtype=torch.long),
    }
    return tensors, kept


def modification_pairs(records: Sequence[DatasetRecord], max_per_group: int | None = None, seed: int = 0) -> list[tuple[DatasetRecord, DatasetRecord]]:
    """(initial, target) pairs inside each polymorph group, target lower in energy (paper §2.2).

    Sorted by formation energy S_0 < S_1 < ...: every (S_i -> S_j), j < i, which includes every
    (S_i -> S_0). ``max_per_group`` keeps a seeded random subset of large groups (always
    keeping the S_i -> S_0 pairs).
    """
    rng = np.random.default_rng(seed)
    pairs = []
    for members in polymorph_groups(records).values():
        ranked = sorted((r for r in members if r.formation_energy_per_atom is not None), key=lambda r: r.formation_energy_per_atom)
        to_ground = [(ranked[i], ranked[0]) for i in range(1, len(ranked))]
        others = [(ranked[i], ranked[j]) for i in range(2, len(ranked)) for j in range(1, i)]
        if max_per_group is not None and len(to_ground) + len(others) > max_per_group:
            keep = max(0, max_per_group - len(to_ground))
            others = [others[k] for k in sorted(rng.choice(len(others), size=min(keep, len(others)), replace=False))]
        pairs += to_ground + others
    return pairs


def _split_records(records, val_fraction, test_fraction, seed):
    rest, test = split_by_formula(records, test_fraction, seed=seed) if test_fraction else (list(records), [])
    val_share = val_fraction / (1 - test_fraction) if val_fraction else 0.0
    train, val = split_by_formula(rest, val_share, seed=seed + 1) if val_share else (rest, [])
    return {"train": train, "val": val, "test": test}


def dataset_splits(data_config, log: Callable[[str], None] = print) -> dict[str, list[DatasetRecord]]:
    """The records of each split of the dataset a :class:`~crystalgen.config.DataConfig` names, exactly
    as training uses them (rows it can use, composition-disjoint splits, capped training split)."""
    _, records = read_dataset(data_config.dataset)
    usable = [r for r in records if r.nsites <= min(data_config.max_atoms, MAX_SITES) and r.formation_energy_per_atom is not None
              and math.isfinite(r.formation_energy_per_atom)]
    if len(usable) < len(records):
        log(f"using {len(usable)} of {len(records)} structures (<= {data_config.max_atoms} atoms, with a formation energy)")
    parts = _split_records(usable, data_config.val_fraction, data_config.test_fraction, data_config.split_seed)
    if data_config.max_train_records and len(parts["train"]) > data_config.max_train_records:
        rng = np.random.default_rng(data_config.split_seed)
        pick = sorted(rng.choice(len(parts["train"]), size=data_config.max_train_records, replace=False))
        parts["train"] = [parts["train"][i] for i in pick]
    return parts


def load_training_data(data_config, modification: bool = False, log: Callable[[str], None] = print, splits: Sequence[str] = SPLITS) -> TrainingData:
    """Read, filter, split and encode the dataset named in a :class:`~crystalgen.config.DataConfig`."""
    parts = dataset_splits(data_config, log)
    sets = {}
    for name in SPLITS:
        if name not in splits:
            sets[name] = TensorSet(encode_records([], log)[0])
        elif modification:
            sets[name] = _pair_set(parts[name], data_config.split_seed, log, data_config.frame)
        else:
            tensors, kept = encode_records(parts[name], log, data_config.frame)
            sets[name] = TensorSet(tensors, kept)
    log(", ".join(f"{n}: {len(sets[n])} {'pairs' if modification else 'structures'}" for n in SPLITS))
    return TrainingData(**sets, scalar_key="energy_diff" if modification else "formation_energy")


def _pair_set(records, seed, log, frame="as-given") -> TensorSet:
    tensors, kept = encode_records(records, log, frame)
    index = {r.id: i for i, r in enumerate(kept)}
    pairs = [(a, b) for a, b in modification_pairs(kept, seed=seed) if a.id in index and b.id in index]
    init = torch.tensor([index[a.id] for a, _ in pairs], dtype=torch.long)
    target = torch.tensor([index[b.id] for _, b in pairs], dtype=torch.long)
    out = {k: v[target] for k, v in tensors.items()}
    out["init_coords_lattice"] = tensors["coords_lattice"][init]
    out["init_nsites"] = tensors["nsites"][init]
    out["energy_diff"] = tensors["formation_energy"][target] - tensors["formation_energy"][init]
    return TensorSet(out, [b for _, b in pairs], [a for a, _ in pairs])
