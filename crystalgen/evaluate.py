"""``crystalgen evaluate``: match rate of each method on a held-out split (paper Tables 1 and 2).

The held-out split is rebuilt from the checkpoint's own data settings (fractions and seed), so
it holds exactly the compositions the model never saw. Each method samples one structure per
held-out condition per seed; a sample counts when pymatgen's StructureMatcher (ltol 0.2,
stol 0.3, angle_tol 5) matches it to the condition's true structure. Next to the match rate, over
all seeds of a method: how many samples the relaxer would accept, how many valid ones are distinct,
and how many distinct ones are novel, i.e. match no structure of the checkpoint's own training split
(:mod:`crystalgen.quality`). With a held-out split of the training dataset, novelty is 100 % by
construction (splits are composition-disjoint); it says more for ``--split train`` (memorisation) or
another dataset.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from crystalgen.checkpoint import code_version, load_method
from crystalgen.config import resolve_dataset
from crystalgen.methods import METHODS, method_spec
from crystalgen.sample import Condition, sample_structures
from crystalgen.training_data import load_training_data


class MethodResult(BaseModel):
    method: str
    task: str
    checkpoint: str
    trained_steps: int
    steps: int
    n_conditions: int
    seeds: list[int]
    match_rates: list[float]
    valid_fraction: float
    structures_per_s: float
    relaxable_fraction: float | None = None
    unique_fraction: float | None = None  # of the valid samples
    novel_fraction: float | None = None  # of the unique samples; None without a training set to compare with
    novelty_against: str = ""  # the training split used, or why there was none

    @property
    def mean(self) -> float:
        return statistics.fmean(self.match_rates)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.match_rates) if len(self.match_rates) > 1 else 0.0


class EvaluationReport(BaseModel):
    dataset: str
    split: str
    created: str
    code_version: str
    results: list[MethodResult]

    def to_markdown(self) -> str:
        lines = [
            f"# Match rate on the {self.split} split of `{Path(self.dataset).name}`",
            "",
            f"StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5); one sample per condition and seed. "
            f"{self.created}, crystalgen {self.code_version}.",
            "",
            "| checkpoint | method | task | sampling steps | conditions | seeds | match rate (mean ± std over seeds) | valid | structures/s | trained steps "
            "| relaxable | unique (of valid) | novel (of unique) |",
            "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.results:
            lines.append(
                f"| `{Path(r.checkpoint).name}` | {r.method} | {r.task} | {r.steps} | {r.n_conditions} | {','.join(map(str, r.seeds))} | "
                f"{100 * r.mean:.1f}% ± {100 * r.std:.1f} | {100 * r.valid_fraction:.0f}% | {r.structures_per_s:.1f} | {r.trained_steps} "
                f"| {_percent(r.relaxable_fraction)} | {_percent(r.unique_fraction)} | {_percent(r.novel_fraction)} |"
            )
        against = sorted({f"`{Path(r.checkpoint).name}`: {r.novelty_against}" for r in self.results if r.novelty_against})
        if against:
            lines += ["", "Novelty compared with: " + "; ".join(against) + "."]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        md, js = out_dir / "evaluation.md", out_dir / "evaluation.json"
        md.write_text(self.to_markdown())
        payload = self.model_dump()
        for entry, result in zip(payload["results"], self.results):
            entry.update(mean=result.mean, std=result.std)
        js.write_text(json.dumps(payload, indent=2) + "\n")
        return md, js


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def training_index(checkpoint: str | Path, log=print):
    """(novelty index over the checkpoint's training split, what it holds), or (None, why not)."""
    from crystalgen.known import KnownStructuresError, training_dataset, training_structures
    from crystalgen.novelty import NoveltyIndex

    try:
        known = training_structures(checkpoint, log=lambda _: None)
    except (KnownStructuresError, OSError, ValueError) as exc:
        log(f"novelty of {checkpoint} not measured: {exc}")
        return None, f"not measured ({exc})"
    return NoveltyIndex(known), f"training split of {training_dataset(checkpoint).name} ({len(known)} structures)"


def family_methods(trained: str) -> list[str]:
    """Every method name that can sample a network trained as ``trained``."""
    family = method_spec(trained).family
    return [name for name, spec in METHODS.items() if spec.family == family]


def held_out(checkpoint: str | Path, dataset: str | Path, split: str, max_conditions: int | None, log=print):
    """(conditions, targets) of a split, built with the checkpoint's split settings."""
    loaded = load_method(checkpoint)
    data_cfg = loaded.config.data.model_copy(update={"dataset": resolve_dataset(Path(dataset))})
    modification = loaded.method.task == "modification"
    tensor_set = load_training_data(data_cfg, modification=modification, log=log, splits=(split,)).split(split)
    targets = tensor_set.records[: max_conditions or None]
    inits = tensor_set.init_records[: len(targets)] if modification else [None] * len(targets)
    if not targets:
        raise ValueError(f"the {split} split of {dataset} is empty")
    conditions = []
    for target, init in zip(targets, inits):
        formula = target.pymatgen.composition.formula.replace(" ", "")
        if init is None:
            conditions.append(Condition(formula=formula, spacegroup=target.spacegroup, formation_energy=target.formation_energy_per_atom))
        else:
            conditions.append(Condition(formula=formula, spacegroup=target.spacegroup,
                                        formation_energy=target.formation_energy_per_atom - init.formation_energy_per_atom,
                                        initial_structure=init.structure))
    return conditions, [t.pymatgen for t in targets]


def evaluate(
    checkpoints: Sequence[str | Path],
    dataset: str | Path,
    split: str = "val",
    methods: Sequence[str] | None = None,
    steps: int | None = None,
    seeds: Sequence[int] = (0,),
    max_conditions: int | None = None,
    device: str | None = None,
    batch_size: int = 256,
    serial: bool | None = None,
    log: Callable[[str], None] = print,
    symmetry: str | None = None,
) -> EvaluationReport:
    """Evaluate each checkpoint with each requested method it supports (all of its family by default).

    ``symmetry``: how samples get their requested space group (:data:`crystalgen.symmetrize.MODES`;
    default: the checkpoint's, see :func:`crystalgen.sample.default_symmetry`).
    """
    from crystalgen.metrics import match_rate
    from crystalgen.quality import sample_quality

    results = []
    for checkpoint in checkpoints:
        loaded = load_method(checkpoint)
        trained = loaded.config.method.name
        supported = family_methods(trained)
        chosen = [m for m in (methods or supported) if m in supported]
        if methods and not chosen:
            log(f"skipping {checkpoint}: trained as {trained!r}, which samples as {', '.join(supported)} only")
            continue
        conditions, targets = held_out(checkpoint, dataset, split, max_conditions, log)
        known, against = training_index(checkpoint, log)
        for name in chosen:
            rates, valid, seconds, everything = [], 0, 0.0, []
            for seed in seeds:
                started = time.perf_counter()
                samples = sample_structures(checkpoint, conditions, method=name, steps=steps, seed=seed,
                                            device=device, batch_size=batch_size, symmetry=symmetry)
                seconds += time.perf_counter() - started
                predicted = [s.pymatgen for s in samples]
                everything += predicted
                valid += sum(p is not None for p in predicted)
                rates.append(match_rate(predicted, targets, serial=serial).rate)
                log(f"{name} seed {seed}: match rate {rates[-1]:.3f} on {len(targets)} {split} conditions")
            n = len(conditions) * len(seeds)
            quality = sample_quality(everything, known)
            results.append(MethodResult(
                method=name, task=loaded.method.task, checkpoint=str(checkpoint), trained_steps=loaded.step,
                steps=steps or loaded.config.method.inference_steps, n_conditions=len(conditions), seeds=list(seeds),
                match_rates=rates, valid_fraction=valid / n, structures_per_s=n / max(seconds, 1e-9),
                relaxable_fraction=quality.relaxable_fraction, unique_fraction=quality.unique_fraction,
                novel_fraction=quality.novel_fraction, novelty_against=against,
            ))
    if methods and not results:
        raise ValueError(f"none of the checkpoints can be sampled with {', '.join(methods)}")
    return EvaluationReport(dataset=str(dataset), split=split, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            code_version=code_version(), results=results)
