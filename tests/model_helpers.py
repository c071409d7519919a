"""Shared pieces for the model/method/train/sample tests: real structures, a tiny configuration."""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from crystalgen.config import TrainConfig
from crystalgen.data.dataset import DatasetRecord, write_dataset
from shared_data import SHARED_DATA

DATA = SHARED_DATA / "cdvae"

TINY_MODEL = {
    "model_channels": 8,
    "channel_mult": [1, 2],
    "num_res_blocks": 1,
    "attention_levels": [1],
    "num_head_channels": 8,
    "condition_hidden": 8,
    "row_element_channels": 4,
}


@lru_cache(maxsize=4)
def _rows(name: str, limit: int, max_atoms: int) -> tuple:
    csv.field_size_limit(10**9)
    out = []
    with open(DATA / name / "val.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            structure = Structure.from_str(row["cif"], fmt="cif")
            if len(structure) > max_atoms:
                continue
            energy = float(row["heat_ref"] if "heat_ref" in row else row["energy_per_atom"])
            out.append((row["material_id"], structure, energy))
            if len(out) == limit:
                break
    return tuple(out)


def records(n_perov: int = 40, n_carbon: int = 0) -> list[DatasetRecord]:
    """Real perov_5 structures (distinct ABX3 compositions) and optionally carbon polymorphs."""
    out = []
    for source, n, max_atoms in (("perov_5", n_perov, 60), ("carbon_24", n_carbon, 8)):
        for mid, structure, energy in _rows(source, n, max_atoms) if n else ():
            if source == "carbon_24":
                energy = energy + 9.2  # total -> roughly formation energy per atom vs graphite
            spg = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number()
            out.append(DatasetRecord(id=f"{source}-{mid}", structure=structure.as_dict(),
                                     formula=structure.composition.reduced_formula, spacegroup=spg,
                                     formation_energy_per_atom=energy, source=source))
    return out


def write_tiny_dataset(path: Path, n_perov: int = 40, n_carbon: int = 0) -> Path:
    write_dataset(path, records(n_perov, n_carbon), {"name": "tiny"})
    return path


def tiny_config(dataset: Path, out_dir: Path, method: str = "cfm-n", **overrides) -> TrainConfig:
    raw = {
        "method": {"name": method, "inference_steps": 4, "train_timesteps": 100},
        "model": dict(TINY_MODEL),
        "data": {"dataset": str(dataset), "val_fraction": 0.2, "test_fraction": 0.0},
        "optim": {"batch_size": 8, "warmup_steps": 2, "lr": 2e-3, "ema_decay": 0.9},
        "max_steps": 6,
        "out_dir": str(out_dir),
        "checkpoint_every": 2,
        "val_every": 1000,
        "val_conditions": 0,
        "log_every": 1,
        "device": "cpu",
    }
    for key, value in overrides.items():
        node = raw
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return TrainConfig.model_validate(raw)
