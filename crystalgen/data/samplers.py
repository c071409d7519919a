"""Torch datasets for the two tasks: generation (one item per structure) and modification pairs.

Modification pairs follow paper §2.2. In each polymorph group sorted by energy
(S_0 lowest, ties broken by id) every epoch contains

* the pairs (S_i -> S_0) for every i >= 1 ("to the ground state"), and
* for every i >= 2, one pair (S_i -> S_j) with j drawn uniformly from 1..i-1 ("to a lower,
  non-lowest polymorph"), redrawn every epoch.

x0 is the higher-energy structure, the target supplies space group and energy, and
E_diff = E_target - E_init <= 0. The number of pairs per epoch is fixed, and pair ``k`` of epoch
``e`` depends only on (seed, e, k). The pair set is therefore reproducible and identical in every
DataLoader worker: the sampler splits the indices, so no pair is duplicated or lost whatever the
number of workers. Call ``set_epoch`` before each epoch (worker processes are re-created per
epoch), or use :class:`EpochSampler`, which passes the epoch with each index and so also works
with ``persistent_workers=True`` and across DDP ranks.

Energies are raw (eV/atom); normalise with :func:`crystalgen.data.stats.energy_statistics`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from crystalgen.data.dataset import DatasetRecord
from crystalgen.data.splits import polymorph_groups
from crystalgen.data.stats import record_energy
from crystalgen.representation import CrystalTensors, encode, to_torch


def encode_record(record: DatasetRecord) -> CrystalTensors:
    """Encode a dataset record with its stored space group and energy (no symmetry analysis)."""
    return encode(record.pymatgen, record_energy(record), spacegroup=record.spacegroup, name=record.id)


class GenerationDataset(Dataset):
    """One item per structure: the dict of :func:`crystalgen.representation.to_torch` plus ``index``."""

    def __init__(self, records: Sequence[DatasetRecord]):
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = to_torch(encode_record(self.records[index]))
        item["index"] = torch.tensor(index, dtype=torch.long)
        return item


@dataclass(frozen=True)
class ModificationPair:
    init: int  # index into the dataset's records: the higher-energy structure (x0)
    target: int  # the lower-energy structure to produce
    e_diff: float  # E_target - E_init <= 0 (eV/atom)


class ModificationPairDataset(Dataset):
    """Modification pairs resampled per epoch (see module docstring). Index with an ``int``
    (uses the epoch set by :meth:`set_epoch`) or an ``(epoch, int)`` tuple from :class:`EpochSampler`."""

    def __init__(self, records: Sequence[DatasetRecord], seed: int = 42):
        self.records = list(records)
        self.seed = seed
        self.epoch = 0
        self.energies = [record_energy(r) for r in self.records]
        self.n_without_energy = sum(e is None for e in self.energies)
        index_of = {id(r): i for i, r in enumerate(self.records)}
        lowest, nonlowest = [], []
        self._sorted_groups: list[np.ndarray] = []
        for members in polymorph_groups(r for r, e in zip(self.records, self.energies) if e is not None).values():
            ranked = np.array(
                sorted((index_of[id(r)] for r in members), key=lambda i: (self.energies[i], self.records[i].id))
            )
            group = len(self._sorted_groups)
            self._sorted_groups.append(ranked)
            lowest += [(ranked[i], ranked[0]) for i in range(1, len(ranked))]
            nonlowest += [(group, i) for i in range(2, len(ranked))]
        self._lowest = np.array(lowest, dtype=np.int64).reshape(-1, 2)
        self._nonlowest = np.array(nonlowest, dtype=np.int64).reshape(-1, 2)
        if len(self) == 0:
            raise ValueError("no modification pairs: no polymorph group has two structures with energies")

    def __len__(self) -> int:
        return len(self._lowest) + len(self._nonlowest)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def pair(self, index: int, epoch: int | None = None) -> ModificationPair:
        """Pair ``index`` of ``epoch`` (default: the current epoch)."""
        if not 0 <= index < len(self):
            raise IndexError(f"pair index {index} out of range 0..{len(self) - 1}")
        epoch = self.epoch if epoch is None else epoch
        if index < len(self._lowest):
            init, target = (int(x) for x in self._lowest[index])
        else:
            group, position = self._nonlowest[index - len(self._lowest)]
            rng = np.random.default_rng([self.seed, epoch, index])
            ranked = self._sorted_groups[group]
            init, target = int(ranked[position]), int(ranked[rng.integers(1, position)])
        return ModificationPair(init, target, self.energies[target] - self.energies[init])

    def pairs_for_epoch(self, epoch: int) -> list[ModificationPair]:
        return [self.pair(i, epoch) for i in range(len(self))]

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = index if isinstance(index, tuple) else (None, index)
        pair = self.pair(int(index), epoch)
        init = encode_record(self.records[pair.init])
        item = to_torch(encode_record(self.records[pair.target]))
        item.update(
            x0=torch.from_numpy(init.coords_lattice.copy()),
            init_element_features=torch.from_numpy(init.element_features),
            init_nsites=torch.tensor(init.nsites, dtype=torch.long),
            init_energy=torch.tensor(init.formation_energy, dtype=torch.float32),
            e_diff=torch.tensor(pair.e_diff, dtype=torch.float32),
            init_index=torch.tensor(pair.init, dtype=torch.long),
            target_index=torch.tensor(pair.target, dtype=torch.long),
        )
        return item


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` so each item knows its epoch even in persistent workers.

    Shuffles with (seed, epoch); with ``world_size > 1`` each rank takes every
    ``world_size``-th index (the last ranks may get one index fewer).
    """

    def __init__(self, n: int | Dataset, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.n = n if isinstance(n, int) else len(n)
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        for index in order[self.rank :: self.world_size]:
            yield self.epoch, int(index)
