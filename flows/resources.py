"""What each stage's jobs ask of the cluster: the campaign's ``resources`` section.

Every stage has its own entry; a job of a stage, created up front or at run time, is placed with
its stage's entry (see ``flows.stages`` and ``hpc.routing``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.stages import Stage


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: a FireWorks category: any name a site gives its workers (gpu, cpu, gpu-a100, cpu-bigmem, ...)
CATEGORY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$"


class Resources(_Strict):
    """Where one job of a stage runs and what it asks the scheduler for (FireWorks category + queue request)."""

    category: str = Field("cpu", pattern=CATEGORY_PATTERN, description="FireWorks category of the workers that run it")
    priority: int | None = Field(None, ge=-(2**31), le=2**31 - 1, description="FireWorks _priority (higher runs first); empty: the stage's default")
    walltime: str = Field("01:00:00", pattern=r"^\d+:\d\d:\d\d$")
    nodes: int = Field(1, ge=1, le=100_000)
    gpus: int = Field(0, ge=0, le=1024)

    @property
    def hours(self) -> float:
        h, m, s = (int(part) for part in self.walltime.split(":"))
        return h + m / 60 + s / 3600


#: default _priority per stage: earlier stages first, so a worker drains the pipeline in order
DEFAULT_PRIORITY = {stage: 100 * (len(Stage) - i) for i, stage in enumerate(Stage)}


class StageResources(_Strict):
    """Resources per stage; every job of a stage, static or created at run time, gets its stage's."""

    references: Resources = Resources(category="gpu", walltime="01:00:00", gpus=1)
    generate: Resources = Resources(category="gpu", walltime="02:00:00", gpus=1)
    prerelax: Resources = Resources(category="gpu", walltime="02:00:00", gpus=1)
    select: Resources = Resources(category="cpu", walltime="01:00:00")
    relax: Resources = Resources(category="cpu", walltime="24:00:00", nodes=1)
    hull: Resources = Resources(category="cpu", walltime="00:30:00")

    @model_validator(mode="before")
    @classmethod
    def _on_top_of_defaults(cls, data: Any) -> Any:
        """``prerelax: {category: gpu-a100}`` changes the category and keeps the stage's other defaults."""
        if not isinstance(data, dict):
            return data
        merged = {}
        for name, value in data.items():
            default = cls.model_fields[name].default if name in cls.model_fields else None
            merged[name] = {**default.model_dump(), **value} if isinstance(value, dict) and default else value
        return merged

    def of(self, stage: Stage | str) -> Resources:
        """The resources of ``stage`` with its default priority filled in."""
        stage = Stage(stage)
        resources: Resources = getattr(self, stage.value)
        if resources.priority is None:
            resources = resources.model_copy(update={"priority": DEFAULT_PRIORITY[stage]})
        return resources
