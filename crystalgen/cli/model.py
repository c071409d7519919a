"""``crystalgen train | sample | evaluate``: the generative-model commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from crystalgen.cli.errors import fail


def _parse_overrides(items: list[str]) -> dict:
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--set expects KEY=VALUE (e.g. optim.lr=1e-4), got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def train_command(
    config: Path = typer.Argument(..., help="training YAML (a path, or the name of a shipped config such as demo.yaml)"),
    set_: list[str] = typer.Option([], "--set", help="override a config entry: --set optim.lr=3e-4 --set data.dataset=PATH"),
    resume: bool = typer.Option(True, help="continue from out_dir/checkpoint.pt when it exists"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Train a generative model. Runs unchanged under `torchrun --nproc_per_node=N`."""
    from crystalgen.checkpoint import CheckpointError
    from crystalgen.config import ConfigError, load_config
    from crystalgen.data.dataset import DatasetFormatError
    from crystalgen.train import Stop, train

    try:
        cfg = load_config(config, _parse_overrides(set_))
        path = train(cfg, resume=resume, progress=progress)
    except Stop as exc:
        typer.secho(str(exc), err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(143) from None
    except (ConfigError, CheckpointError, DatasetFormatError, ValueError, OSError) as exc:
        fail(f"train: {exc}")
    else:
        typer.echo(f"checkpoint: {path}")


def _require_finite_energies(conds, conditions_file: Optional[Path]) -> None:
    """NaN/inf would flow into the model as a condition and come out as garbage samples: refuse first."""
    import math

    for i, cond in enumerate(conds):
        if not math.isfinite(cond.formation_energy):
            where = f"{conditions_file}: condition {i + 1} formation_energy" if conditions_file else "--energy"
            fail(f"sample: {where} must be a finite number (eV/atom), got {cond.formation_energy}")


def sample_command(
    formula: Optional[str] = typer.Option(None, help="cell composition, e.g. Ta2B4 (6 sites)"),
    spg: Optional[int] = typer.Option(None, help="space group number 1..230"),
    energy: Optional[float] = typer.Option(None, help="formation energy, eV/atom (modification: E_target - E_initial)"),
    conditions: Optional[Path] = typer.Option(None, help="YAML/JSON list of conditions instead of --formula/--spg/--energy"),
    initial: Optional[Path] = typer.Option(None, help="modification methods: the structure to modify (any pymatgen-readable file)"),
    n: int = typer.Option(1, "--n", "--samples-per-condition", min=1, help="samples per condition (under torchrun spell it --samples-per-condition)"),
    out: Path = typer.Option(..., help="JSON Lines result file (appended to; finished samples are skipped on rerun)"),
    checkpoint: Optional[Path] = typer.Option(None, help="checkpoint (default: the shipped default checkpoint)"),
    method: Optional[str] = typer.Option(None, help="sampler of the checkpoint's family, e.g. ddim for a ddpm model"),
    steps: Optional[int] = typer.Option(None, min=1, help="sampling steps (default: the checkpoint's)"),
    seed: int = typer.Option(0),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 (default: cuda if available)"),
    batch_size: int = typer.Option(256, min=1),
    symmetry: Optional[str] = typer.Option(
        None, help="impose the requested space group: none, project, wyckoff or project-or-wyckoff "
        "(default: project-or-wyckoff for checkpoints trained in standard primitive cells, else none)"),
) -> None:
    """Generate structures for conditions; works under torchrun (conditions are sharded)."""
    from pydantic import ValidationError

    from crystalgen.checkpoint import CheckpointError
    from crystalgen.sample import Condition, conditions_from_file, sample_structures

    try:
        if conditions is not None:
            conds = conditions_from_file(conditions)
        else:
            missing = [name for name, v in (("--formula", formula), ("--spg", spg), ("--energy", energy)) if v is None]
            if missing:
                fail(f"sample: give {', '.join(missing)} (or --conditions FILE)")
            init = None
            if initial is not None:
                from pymatgen.core import Structure

                init = Structure.from_file(initial).as_dict()
            conds = [Condition(formula=formula, spacegroup=spg, formation_energy=energy, initial_structure=init)]
        _require_finite_energies(conds, conditions)
        import torch

        from crystalgen.distributed import init_distributed

        kind = "cuda" if (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda") else "cpu"
        info = init_distributed(kind)
        from rich.progress import Progress

        with Progress(transient=True, disable=not info.is_main) as bar:
            task = bar.add_task("sampling", total=None)
            samples = sample_structures(checkpoint, conds, method=method, steps=steps, samples_per_condition=n, seed=seed,
                                        device=device, out=out, batch_size=batch_size, symmetry=symmetry,
                                        progress=lambda done, total: bar.update(task, completed=done, total=total))
    except ValidationError as exc:
        fail("sample: invalid condition: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except (CheckpointError, ValueError, OSError) as exc:
        fail(f"sample: {exc}")
    if not info.is_main:
        return
    valid = sum(s.valid for s in samples)
    typer.echo(f"{len(samples)} samples ({valid} valid) in {out}")
    for reason in sorted({s.reason for s in samples if not s.valid}):
        typer.echo(f"  invalid: {reason}")


def evaluate_command(
    checkpoint: list[Path] = typer.Option(..., help="checkpoint(s) to evaluate; repeat for several methods"),
    dataset: Path = typer.Option(..., help="crystalgen dataset file"),
    split: str = typer.Option("val", help="train, val or test (rebuilt with each checkpoint's split settings)"),
    methods: Optional[str] = typer.Option(None, help="comma-separated method names (default: all samplers of each checkpoint)"),
    seeds: str = typer.Option("0", help="comma-separated sampling seeds"),
    steps: Optional[int] = typer.Option(None, min=1),
    max_conditions: Optional[int] = typer.Option(None, min=1, help="evaluate only the first N held-out conditions"),
    device: Optional[str] = typer.Option(None),
    out: Path = typer.Option(Path("evaluation"), help="folder for evaluation.md and evaluation.json"),
    symmetry: Optional[str] = typer.Option(None, help="space-group imposition of the samples (see `crystalgen sample`)"),
) -> None:
    """Match rate per method on a held-out split, with validity, uniqueness and novelty against the
    checkpoint's training split, as a Markdown + JSON report."""
    from crystalgen.checkpoint import CheckpointError
    from crystalgen.config import ConfigError
    from crystalgen.data.dataset import DatasetFormatError
    from crystalgen.evaluate import evaluate

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        fail(f"evaluate: --seeds must be comma-separated integers, got {seeds!r}")
    method_list = [m.strip() for m in methods.split(",")] if methods else None
    try:
        if method_list:
            from crystalgen.methods import method_spec

            for m in method_list:
                method_spec(m)
        report = evaluate(checkpoint, dataset, split=split, methods=method_list, steps=steps, seeds=seed_list,
                          max_conditions=max_conditions, device=device, symmetry=symmetry)
    except (ConfigError, CheckpointError, DatasetFormatError, ValueError, OSError) as exc:
        fail(f"evaluate: {exc}")
    md, js = report.write(out)
    typer.echo(report.to_markdown())
    typer.echo(f"written: {md}, {js}")


def register(app: typer.Typer) -> None:
    """Attach the model commands to the root app."""
    app.command("train")(train_command)
    app.command("sample")(sample_command)
    app.command("evaluate")(evaluate_command)
