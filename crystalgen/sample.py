"""Sample crystal structures for a list of conditions from a trained checkpoint.

:func:`sample_structures` is the one entry point (the CLI and the workflow's generate job call
it). Properties that matter on a cluster:

* **Deterministic per (seed, condition, sample index):** every sample draws its noise from its
  own generator, seeded from those three, so results do not depend on batch size, on how many
  processes share the work, or on which samples were already done.
* **Sharded under torchrun:** when ``torch.distributed`` is initialised, rank r takes every
  world-th pending sample; all ranks return the full result list.
* **Incremental and resumable:** with ``out=FILE`` every finished batch is appended to a JSON
  Lines file (one per rank, merged at the end); a rerun skips the (condition, index) keys already
  there, so a killed run loses at most one batch.
* **Invalid structures are kept, not hidden:** a sample that cannot be decoded, or has atoms
  closer than ``MIN_DISTANCE``, gets ``structure=None`` and a ``reason``; a decodable one keeps its
  cell in ``rejected_structure`` for :mod:`crystalgen.rescue` (unless imposing the space group
  rebuilt its atoms in that cell: ``symmetry_rebuilt`` then says why the raw sample was rejected).
* **The requested space group is imposed** (:mod:`crystalgen.symmetrize`) when the checkpoint was
  trained on crystals in their standard primitive cells (``data.frame``), or when ``symmetry`` asks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymatgen.core import Composition, Element, Structure

from crystalgen.checkpoint import load_method
from crystalgen.config import CHECKPOINT_DIR
from crystalgen.layout import MAX_SITES, MAX_Z, N_ROWS
from crystalgen.representation import RepresentationError, canonical_species, condition_batch, decode, encode

DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "tawb-cfm-n.pt"
MIN_DISTANCE = 0.5  # Å; closer atoms make a structure physically meaningless
ENERGY_DECIMALS = 6  # eV/atom: energies equal to this many decimals are one condition


def condition_key(formula: str, spacegroup: int, formation_energy: float) -> tuple[str, int, float]:
    """The identity of a condition, the one rounding every layer uses (sampling seeds, candidate ids).

    ``(cell formula without spaces, space group, energy rounded to ENERGY_DECIMALS)``.
    """
    cell_formula = Composition(formula).formula.replace(" ", "")
    return cell_formula, int(spacegroup), round(float(formation_energy), ENERGY_DECIMALS)


def condition_key_text(key: tuple[str, int, float]) -> str:
    """``formula|spacegroup|energy``, the text sampling seeds hash.

    ``.15g`` of the rounded energy writes every energy with at most 6 significant digits and
    decimals (and |E| < 1e6) exactly as the former ``.6g`` of the raw value did, so existing
    campaigns keep their seeds; energies that ``.6g`` merged (-1.234567, -1.234568) now differ.
    """
    formula, spacegroup, energy = key
    return f"{formula}|{spacegroup}|{energy:.15g}"


class Condition(BaseModel):
    """What to generate: composition (the full cell formula: 'Ta2B4' has 6 sites), space group, energy.

    For generation ``formation_energy`` is the target formation energy (eV/atom); for
    modification methods it is the energy difference E_target - E_initial (eV/atom, <= 0) and
    ``initial_structure`` (a pymatgen dict) is the structure to modify.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    formula: str
    spacegroup: int = Field(ge=1, le=230)
    formation_energy: float
    initial_structure: dict[str, Any] | None = None

    @field_validator("formula")
    @classmethod
    def _representable(cls, value: str) -> str:
        try:
            species = canonical_species(value)
        except (ValueError, RepresentationError) as exc:
            raise ValueError(f"formula {value!r}: {exc}") from exc
        if not 1 <= len(species) <= MAX_SITES:
            raise ValueError(f"formula {value!r} has {len(species)} sites; the model handles 1..{MAX_SITES}")
        unknown = [str(el) for el in Composition(value).elements if not isinstance(el, Element)]
        if unknown:
            raise ValueError(f"formula {value!r}: {', '.join(unknown)} is not a chemical element")
        if max(el.Z for el in Composition(value).elements) > MAX_Z:
            raise ValueError(f"formula {value!r} contains an element beyond Z = {MAX_Z}")
        return value

    @property
    def key(self) -> str:
        """Stable identity of the condition (for resuming and seeding)."""
        base = condition_key_text(condition_key(self.formula, self.spacegroup, self.formation_energy))
        if self.initial_structure is not None:
            blob = json.dumps(self.initial_structure, sort_keys=True).encode()
            base += "|" + hashlib.sha1(blob).hexdigest()[:16]
        return base


class GeneratedSample(BaseModel):
    """One generated structure (or the reason there is none) and where it came from."""

    condition: Condition
    sample_index: int
    seed: int
    method: str
    steps: int
    checkpoint: str
    origin: str = ""  # baseline generators: what the structure was built from (parent, substitution, tool)
    rejected_structure: dict[str, Any] | None = None  # the decoded cell of a sample rejected for its geometry
    structure: dict[str, Any] | None = None
    reason: str = ""
    symmetry: str = "none"  # how the requested group was imposed: none, project or wyckoff
    symmetry_displacement: float | None = None  # projection: largest atom move, Å
    #: the raw sample's own rejection (e.g. atoms too close) when imposing the group rebuilt its atoms
    symmetry_rebuilt: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return self.condition.key, self.sample_index

    @property
    def pymatgen(self) -> Structure | None:
        return None if self.structure is None else Structure.from_dict(self.structure)

    @property
    def valid(self) -> bool:
        return self.structure is not None


def default_checkpoint() -> Path:
    """The default checkpoint shipped with the package (crystalgen/assets/checkpoints/README.md)."""
    return DEFAULT_CHECKPOINT


def sample_seed(seed: int, condition: Condition, index: int) -> int:
    digest = hashlib.sha256(f"{seed}|{condition.key}|{index}".encode()).hexdigest()
    return int(digest[:15], 16)


def _sampling_batch(conditions: Sequence[Condition], modification: bool, device) -> dict[str, torch.Tensor]:
    """Network inputs for a list of conditions (:func:`~crystalgen.representation.condition_batch`)."""
    atomic_numbers = np.zeros((len(conditions), N_ROWS), dtype=np.int16)
    for row, c in zip(atomic_numbers, conditions):
        species = [Element(symbol).Z for symbol in canonical_species(c.formula)]
        row[: len(species)] = species
    batch = condition_batch(atomic_numbers, [c.spacegroup for c in conditions], [c.formation_energy for c in conditions])
    if modification:
        missing = [c.formula for c in conditions if c.initial_structure is None]
        if missing:
            raise ValueError(f"a modification model needs initial_structure for every condition (missing: {missing[:3]})")
        init = [encode(Structure.from_dict(c.initial_structure), spacegroup=1) for c in conditions]
        batch["init_coords_lattice"] = torch.from_numpy(np.stack([e.coords_lattice for e in init]))
        batch["init_nsites"] = torch.tensor([e.nsites for e in init], dtype=torch.long)
        batch["energy_diff"] = batch["formation_energy"]
    return {k: v.to(device) for k, v in batch.items()}


def check_structure(coords_lattice: torch.Tensor, species: list[str]) -> tuple[Structure | None, str]:
    """Decode one sample; (None, reason) when it is not a usable structure."""
    try:
        structure = decode(coords_lattice, species)
    except RepresentationError as exc:
        return None, f"undecodable: {exc}"
    if len(structure) > 1:
        dist_matrix = structure.distance_matrix
        np.fill_diagonal(dist_matrix, np.inf)
        closest = float(dist_matrix.min())
        if closest < MIN_DISTANCE:
            return None, f"atoms {closest:.2f} Å apart (< {MIN_DISTANCE} Å)"
    if structure.volume / len(structure) > 1000:
        return None, f"volume {structure.volume / len(structure):.0f} Å^3/atom is unphysical"
    return structure, ""


def rejected_structure(coords_lattice: torch.Tensor, species: list[str]) -> dict[str, Any] | None:
    """The decoded cell of a sample :func:`check_structure` rejected, kept so that
    :mod:`crystalgen.rescue` can try to repair it; ``None`` when it does not decode at all."""
    try:
        return decode(coords_lattice, species).as_dict()
    except RepresentationError:
        return None


def default_symmetry(config) -> str:
    """A checkpoint trained in standard primitive cells gets its group imposed; older ones stay P1."""
    return "project-or-wyckoff" if getattr(config.data, "frame", "as-given") == "standard-primitive" else "none"


def _finish_sample(coords_lattice: torch.Tensor, condition: Condition, symmetry: str, seed: int) -> dict[str, Any]:
    """Decode one sample and impose its space group: the GeneratedSample fields it determines."""
    species = canonical_species(condition.formula)
    structure, reason = check_structure(coords_lattice, species)
    rejected = None if structure is not None else rejected_structure(coords_lattice, species)
    return impose_symmetry(structure, reason, rejected, condition, symmetry, seed)


def impose_symmetry(structure: Structure | None, reason: str, rejected: dict[str, Any] | None, condition: Condition,
                    symmetry: str, seed: int) -> dict[str, Any]:
    """The GeneratedSample fields of a decoded sample once ``symmetry`` imposed the requested group.

    ``structure`` is the sample, or ``None`` with the ``reason`` it was rejected and its decoded cell
    ``rejected``. A sample rejected for its atoms (too close) still has a cell: imposing the group
    rebuilds the atoms in that cell, and ``symmetry_rebuilt`` keeps the raw sample's rejection."""
    given = structure if structure is not None else (Structure.from_dict(rejected) if rejected else None)
    if symmetry == "none" or given is None:
        if structure is None:
            return {"structure": None, "reason": reason, "rejected_structure": rejected}
        return {"structure": structure.as_dict(), "reason": ""}
    from crystalgen.symmetrize import symmetrize

    result = symmetrize(given, condition.spacegroup, symmetry, seed=seed % 2**31)
    fields = {"symmetry": result.method, "symmetry_displacement": result.displacement}
    if result.structure is None:
        before = f"{reason}; " if structure is None else ""
        return {**fields, "structure": None, "rejected_structure": rejected,
                "reason": f"{before}space group {condition.spacegroup}: {result.reason}"}
    return {**fields, "structure": result.structure.as_dict(), "reason": "", "symmetry_rebuilt": reason}


def sample_structures(
    checkpoint: str | os.PathLike | None,
    conditions: Sequence[Condition | dict],
    method: str | None = None,
    steps: int | None = None,
    samples_per_condition: int = 1,
    seed: int = 0,
    device: str | torch.device | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    symmetry: str | None = None,
) -> list[GeneratedSample]:
    """Generate ``samples_per_condition`` structures for each condition.

    Returns every (condition, sample index) result in condition order, including invalid ones
    (``structure=None`` with ``reason``) and ones found in ``out`` from an earlier run.
    ``progress(done, total)`` is called after each batch (rank-local counts). ``symmetry`` is a
    :data:`crystalgen.symmetrize.MODES` entry (default: :func:`default_symmetry` of the checkpoint).
    """
    if samples_per_condition < 1:
        raise ValueError(f"samples_per_condition must be >= 1, got {samples_per_condition}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    conditions = [c if isinstance(c, Condition) else Condition.model_validate(c) for c in conditions]
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None and dist.is_initialized():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    loaded = load_method(checkpoint or default_checkpoint(), method=method, device=device)
    symmetry = symmetry or default_symmetry(loaded.config)
    from crystalgen.symmetrize import MODES

    if symmetry not in MODES:
        raise ValueError(f"symmetry must be one of {', '.join(MODES)}, got {symmetry!r}")
    model = loaded.method
    n_steps = steps or loaded.config.method.inference_steps
    modification = model.task == "modification"
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)

    out_path = Path(out) if out else None
    done = {s.key: s for s in read_samples(out_path)} if out_path else {}
    if world > 1:
        dist.barrier()  # every rank reads what is done before any rank appends: all agree on `todo`
    todo = [(ci, k) for ci, c in enumerate(conditions) for k in range(samples_per_condition) if (c.key, k) not in done]
    mine = todo[rank::world]
    part = _part_path(out_path, rank, world) if out_path else None

    produced: list[GeneratedSample] = []
    for start in range(0, len(mine), batch_size):
        chunk = mine[start : start + batch_size]
        conds = [conditions[ci] for ci, _ in chunk]
        seeds = [sample_seed(seed, c, k) for c, (_, k) in zip(conds, chunk)]
        batch = _sampling_batch(conds, modification, device)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        with torch.inference_mode():
            x = model.sample(batch, steps=n_steps, generator=generators).cpu()
        results = [
            GeneratedSample(condition=cond, sample_index=k, seed=seeds[i], method=model.name, steps=n_steps,
                            checkpoint=str(loaded.path), **_finish_sample(x[i], cond, symmetry, seeds[i]))
            for i, (cond, (_, k)) in enumerate(zip(conds, chunk))
        ]
        if part:
            _append(part, results)
        produced += results
        if progress:
            progress(start + len(chunk), len(mine))

    if world > 1:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, [s.model_dump() for s in produced])
        produced = [GeneratedSample.model_validate(s) for per_rank in gathered for s in per_rank]
        if out_path:
            dist.barrier()
            if rank == 0:
                _merge_parts(out_path)
            dist.barrier()
    elif out_path and any(out_path.parent.glob(f"{out_path.name}.rank*.part")):
        _merge_parts(out_path)  # parts left by an earlier multi-process run
    by_key = {**done, **{s.key: s for s in produced}}
    return [by_key[(c.key, k)] for c in conditions for k in range(samples_per_condition)]


def read_samples(path: Path | None) -> list[GeneratedSample]:
    """Samples in ``path`` and its per-rank part files; a truncated last line (killed run) is ignored."""
    if path is None:
        return []
    samples = []
    for file in [path, *sorted(path.parent.glob(f"{path.name}.rank*.part"))]:
        if not file.is_file():
            continue
        for line in file.read_text().splitlines():
            try:
                samples.append(GeneratedSample.model_validate_json(line))
            except ValueError:
                continue
    return samples


def write_samples(path: str | os.PathLike, samples: Iterable[GeneratedSample]) -> None:
    """Write a complete result file atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(s.model_dump_json() + "\n" for s in samples))
    os.replace(tmp, path)


def _part_path(path: Path, rank: int, world: int) -> Path:
    return path if world == 1 else path.with_name(f"{path.name}.rank{rank}.part")


def _append(path: Path, samples: list[GeneratedSample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with open(path, "a", encoding="utf-8") as fh:
        if torn:  # a killed run left half a line: end it so our first record stays readable
            fh.write("\n")
        fh.write("".join(s.model_dump_json() + "\n" for s in samples))
        fh.flush()
        os.fsync(fh.fileno())


def _merge_parts(path: Path) -> None:
    merged = {s.key: s for s in read_samples(path)}
    write_samples(path, merged.values())
    for part in path.parent.glob(f"{path.name}.rank*.part"):
        part.unlink()


def conditions_from_file(path: str | os.PathLike) -> list[Condition]:
    """Conditions from a YAML/JSON list of mappings (formula, spacegroup, formation_energy[, initial_structure])."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, list):
        raise ValueError(f"{path} must hold a list of conditions")
    return [Condition.model_validate(item) for item in raw]

