"""The campaign file: one YAML document that says what to generate, how to relax it and how to rank it.

``load_campaign(path)`` is the only way in. Every problem comes back as one :class:`CampaignError`
whose message names the field and the offending value, so ``validate``, ``plan`` and ``run`` can stop
before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pymatgen.core import Composition, Element

from flows.campaign_sections import (
    INT64_MAX,
    MAX_CANDIDATES,
    MAX_COUNT,
    ModelSpec,
    PrerelaxSpec,
    ReferenceSpec,
    RelaxSpec,
    Strict,
    SubstitutionSpec,
)
from flows.resources import StageResources
from flows.stages import MakerSettings
from flows.yaml_input import YamlInputError, read_yaml

#: hull-based target energies start from the hull energy rounded to this many decimals (1 meV/atom)
HULL_ENERGY_DECIMALS = 3


class CampaignError(ValueError):
    """A campaign file that cannot be run; the message names the field and value."""


Energy = Annotated[float, Field(ge=-50, le=50)]  # eV/atom; formation energies are a few eV/atom at most


class EnergyScheme(Strict):
    """``count`` formation energies ``start + offset + i * step`` (eV/atom); ``start: hull`` = the hull energy."""

    name: str | None = None
    start: Literal["hull"] | Energy = "hull"
    offset: Energy = 0.0
    step: float = Field(0.01, ge=-10, le=10, description="eV/atom between grid points")
    count: int = Field(21, ge=1, le=MAX_COUNT, description="number of grid points")

    @field_validator("step")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("must not be 0")
        return value

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        base = "hull" if self.start == "hull" else f"{self.start:g}"
        return f"{base}{self.offset:+g}:{self.step:g}x{self.count}"

    def values(self, hull_energy: float | None) -> list[float]:
        """The grid for one composition; ``hull_energy`` is needed when ``start`` is ``hull``."""
        if self.start == "hull":
            if hull_energy is None:
                raise ValueError(f"energy scheme {self.label} starts at the hull energy, which is unknown")
            # to the meV/atom: hull energies from a potential differ in the 6th decimal between runs
            # (float32 reductions), and candidate ids and sampling seeds derive from these values
            base = round(hull_energy, HULL_ENERGY_DECIMALS)
        else:
            base = float(self.start)
        return [round(base + self.offset + i * self.step, 6) for i in range(self.count)]


SpaceGroup = Annotated[int, Field(ge=1, le=230)]


class ConditionGrid(MakerSettings):
    """What to generate: compositions x space groups x formation-energy schemes, less ``excluded`` pairs."""

    compositions: list[str]
    spacegroups: list[SpaceGroup]
    energy_grid: list[EnergyScheme]
    excluded: list[tuple[str, int]] = Field(default_factory=list, description="(composition, space group) left out")


class Campaign(Strict):
    """A whole discovery campaign; see campaigns/demo.yaml for an annotated example."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    model: ModelSpec = ModelSpec()
    generator: list[str] = Field(["model"], min_length=1, description="who makes the candidates: model, "
                                 "random-symmetric, substitution (several: each makes samples_per_condition per condition)")
    substitution: SubstitutionSpec = SubstitutionSpec()
    rescue: bool = Field(True, description="repair near-miss samples (atoms too close, cell too small) before "
                         "pre-relaxation; recorded in the candidate (rescue) and counted apart in the funnel")
    compositions: list[str] = Field(min_length=1)
    spacegroups: list[SpaceGroup] = Field(min_length=1)
    energy_grid: list[EnergyScheme] = Field(min_length=1)
    incompatible_spacegroups: Literal["error", "skip", "record"] = Field(
        "error", description="a composition the Wyckoff positions of a requested group cannot hold: refuse the "
        "campaign (error), leave that pair out of the grid (skip), or keep it and record its candidates as failed "
        "at generation with the reason (record)")
    samples_per_condition: int = Field(1, ge=1, le=MAX_COUNT)
    stability_window: float = Field(0.1, ge=0, le=10, description="eV/atom above the hull still counted as stable "
                                    "(within the window) in the funnel, besides e_above_hull <= 0")
    seed: int = Field(0, ge=0, le=INT64_MAX, description="random seed; stored in every candidate (MongoDB int64)")
    prerelax: PrerelaxSpec = PrerelaxSpec()
    relax: RelaxSpec = RelaxSpec()
    references: ReferenceSpec = ReferenceSpec()
    resources: StageResources = StageResources()
    #: folder of the campaign file; relative paths inside it resolve against this
    base_dir: Path = Field(Path("."), exclude=True)

    @field_validator("energy_grid", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("generator", mode="before")
    @classmethod
    def _generators(cls, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        if isinstance(value, list):
            from crystalgen.generators import check_generator

            for name in value:
                check_generator(str(name))
            if len(set(value)) != len(value):
                raise ValueError("a generator is listed twice")
        return value

    @field_validator("compositions")
    @classmethod
    def _real_elements(cls, value: list[str]) -> list[str]:
        for formula in value:
            try:
                composition = Composition(formula)
            except (ValueError, KeyError) as exc:
                raise ValueError(f"cannot parse formula {formula!r}: {exc}") from None
            for element in composition.elements:
                if not Element.is_valid_symbol(str(getattr(element, "symbol", element))):
                    raise ValueError(f"unknown element {element!s} in formula {formula!r}")
        if len({Composition(f).reduced_formula for f in value}) != len(value):
            raise ValueError("the same composition is listed twice")
        return value

    @model_validator(mode="after")
    def _distinct_spacegroups(self) -> Campaign:
        if len(set(self.spacegroups)) != len(self.spacegroups):
            raise ValueError("spacegroups: a space group is listed twice")
        candidates = (len(self.compositions) * len(self.spacegroups) * sum(s.count for s in self.energy_grid)
                      * self.samples_per_condition * len(self.generator))
        if candidates > MAX_CANDIDATES:
            raise ValueError(f"the grid asks for up to {candidates:,} candidates; at most {MAX_CANDIDATES:,} per campaign")
        return self

    @property
    def grid(self) -> ConditionGrid:
        """The conditions grid; with ``incompatible_spacegroups: skip`` without the pairs that cannot exist."""
        excluded = []
        if self.incompatible_spacegroups == "skip":
            from flows.preflight import incompatible_pairs

            excluded = incompatible_pairs(self)
        return ConditionGrid(compositions=self.compositions, spacegroups=self.spacegroups,
                             energy_grid=self.energy_grid, excluded=excluded)

    @property
    def unfit_pairs(self) -> list[tuple[str, int]]:
        """With ``incompatible_spacegroups: record``, the (composition, group) pairs recorded as failed."""
        if self.incompatible_spacegroups != "record":
            return []
        from flows.preflight import incompatible_pairs

        return incompatible_pairs(self)

    @property
    def substitution_sources(self) -> list[str]:
        """``substitution.sources`` with folders as absolute paths (jobs run elsewhere)."""
        return [s if s in {"references", "prototypes"} else str(self.resolve_path(s).resolve())
                for s in self.substitution.sources]

    def resolve_path(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate)

    def checkpoint_path(self) -> Path:
        """The model checkpoint file; ``CampaignError`` when it does not exist."""
        if self.model.checkpoint == "default":
            try:
                from crystalgen.sample import default_checkpoint
            except ImportError as exc:
                raise CampaignError(f"model.checkpoint: 'default' is unavailable ({exc})") from None
            path = Path(default_checkpoint())
        else:  # a path (relative to the campaign file), else the name of a shipped checkpoint
            from crystalgen.config import CHECKPOINT_DIR

            path = self.resolve_path(self.model.checkpoint)
            if not path.is_file() and (CHECKPOINT_DIR / self.model.checkpoint).is_file():
                path = CHECKPOINT_DIR / self.model.checkpoint
        if not path.is_file():
            raise CampaignError(f"model.checkpoint: checkpoint file not found: {path}")
        return path


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "campaign"
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
        lines.append(f"{field}: {message}{shown}")
    return "\n".join(lines)


def parse_campaign(data: Any, base_dir: Path = Path(".")) -> Campaign:
    """Validate a campaign mapping; raises :class:`CampaignError`."""
    if not isinstance(data, dict):
        raise CampaignError("the campaign file must hold a mapping of field: value")
    try:
        return Campaign.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        raise CampaignError(_format_errors(exc)) from None


def load_campaign(path: str | Path, check_checkpoint: bool = True) -> Campaign:
    """Read and validate a campaign YAML file (and, by default, that its checkpoint exists)."""
    path = Path(path)
    if not path.is_file():
        raise CampaignError(f"campaign file not found: {path}")
    try:
        data = read_yaml(path)
    except YamlInputError as exc:
        raise CampaignError(str(exc)) from None
    campaign = parse_campaign(data, base_dir=path.resolve().parent)
    if check_checkpoint and "model" in campaign.generator:
        campaign.checkpoint_path()
    return campaign
