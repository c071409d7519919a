"""Known structures with a label: what substitution starts from and what novelty is measured against.

Labels say where a structure comes from, ``kind:name``: ``reference:TaB2`` (a campaign's reference
phase), ``prototype:<record id>`` (the shipped AFLOW-prototype dataset), ``training:<record id>``
(the training split of a checkpoint), ``cif:<file name>`` (a user folder). Structures from datasets
are parsed on first use, so an index over thousands of records costs only the formulas it is asked
about.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

from pymatgen.core import Species, Structure

from crystalgen.config import DATASET_DIR

PROTOTYPE_DATASET = DATASET_DIR / "aflow_prototypes_tensornet.jsonl.gz"
CIF_SUFFIXES = (".cif", ".mcif")


class KnownStructuresError(ValueError):
    """A source of known structures is missing, empty or unreadable."""


class KnownStructure:
    """A labelled structure; ``data`` is a pymatgen Structure or its dict (parsed when first needed)."""

    def __init__(self, label: str, data: Structure | dict[str, Any], formula: str | None = None):
        self.label = label
        self._data = data
        self._formula = formula

    @cached_property
    def structure(self) -> Structure:
        structure = self._data if isinstance(self._data, Structure) else Structure.from_dict(self._data)
        if any(isinstance(sp, Species) for sp in structure.composition):
            structure = structure.copy()
            structure.remove_oxidation_states()
        return structure

    @cached_property
    def formula(self) -> str:
        """Reduced formula: the bucket novelty searches."""
        return self._formula or self.structure.composition.reduced_formula

    @property
    def nsites(self) -> int:
        return len(self._data["sites"]) if isinstance(self._data, dict) else len(self._data)

    def __repr__(self) -> str:
        return f"KnownStructure({self.label!r})"


def labelled(kind: str, items: Iterable[tuple[str, Structure | dict[str, Any]]]) -> list[KnownStructure]:
    """``kind:name`` labels for (name, structure) pairs, e.g. a campaign's reference phases."""
    return [KnownStructure(f"{kind}:{name}", data) for name, data in items]


def dataset_structures(path: str | os.PathLike, kind: str = "dataset", records=None) -> list[KnownStructure]:
    """The records of a crystalgen dataset (or the given ``records`` of it), labelled ``kind:<record id>``."""
    from crystalgen.data.dataset import read_dataset

    if records is None:
        _, records = read_dataset(path)
    return [KnownStructure(f"{kind}:{r.id}", r.structure, r.formula) for r in records]


def prototype_structures() -> list[KnownStructure]:
    """The shipped AFLOW-prototype dataset (2,864 ML-relaxed structures, 21 elements)."""
    return dataset_structures(PROTOTYPE_DATASET, kind="prototype")


def cif_structures(folder: str | os.PathLike) -> list[KnownStructure]:
    """Every CIF in ``folder`` (not recursive), labelled ``cif:<file name>``, in file-name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KnownStructuresError(f"CIF folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in CIF_SUFFIXES)
    if not files:
        raise KnownStructuresError(f"CIF folder {folder} holds no .cif files")
    known = []
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = Structure.from_file(path)
        except Exception as exc:  # pymatgen's CIF parser raises many kinds for a broken file
            raise KnownStructuresError(f"CIF folder {folder}: {path.name} is not a readable structure: {exc}") from None
        known.append(KnownStructure(f"cif:{path.name}", structure))
    return known


def training_dataset(checkpoint: str | os.PathLike) -> Path:
    """The dataset file a checkpoint was trained on: the path it stores, else the shipped dataset of the
    same file name (checkpoints store the absolute path of the machine that trained them)."""
    return _training_data_config(checkpoint).dataset


def training_structures(checkpoint: str | os.PathLike, log=lambda message: None) -> list[KnownStructure]:
    """The training split of a checkpoint's dataset (its own split settings), labelled ``training:<record id>``."""
    from crystalgen.training_data import dataset_splits

    data = _training_data_config(checkpoint)
    return dataset_structures(data.dataset, kind="training", records=dataset_splits(data, log)["train"])


def _training_data_config(checkpoint: str | os.PathLike):
    from crystalgen.checkpoint import load_checkpoint
    from crystalgen.config import DataConfig

    data = DataConfig.model_validate(load_checkpoint(checkpoint)["config"]["data"])
    for candidate in (data.dataset, DATASET_DIR / data.dataset.name):
        if candidate.is_file():
            return data.model_copy(update={"dataset": candidate})
    raise KnownStructuresError(f"training set of {checkpoint}: {data.dataset} does not exist here, "
                               f"and no shipped dataset is named {data.dataset.name}")
