"""The pipeline's stages, and the tag every job carries so that any manager can route it.

A job is tagged once, when its stage's Maker creates it (static jobs when the campaign flow is
built, dynamic ones when a fan-out job runs): ``Job.metadata`` gets the stage, the campaign and the
candidate ids it works on. jobflow copies ``metadata`` into the FireWorks spec, so ``crystalgen_stage``
and friends are queryable on every firework. Where the job runs (FireWorks ``_category``,
``_priority``, ``_queueadapter``) is decided by whoever submits the flow (``hpc.routing``) from the
campaign's ``resources``, and handed to the Makers as ``manager_config`` per stage, which they put
on every job they create, so static and dynamic jobs are routed the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from jobflow import Maker
from pydantic import BaseModel, ConfigDict

STAGE_KEY = "crystalgen_stage"
CAMPAIGN_KEY = "crystalgen_campaign"
CANDIDATES_KEY = "crystalgen_candidates"


class Stage(str, Enum):
    """Pipeline stages, in the order work flows through them."""

    REFERENCES = "references"
    GENERATE = "generate"
    PRERELAX = "prerelax"
    SELECT = "select"
    RELAX = "relax"
    HULL = "hull"


def job_tag(stage: Stage, campaign: str, candidate_ids: Iterable[str] = ()) -> dict[str, Any]:
    """The metadata that identifies a job: its stage, campaign and (if any) candidates."""
    tag: dict[str, Any] = {STAGE_KEY: Stage(stage).value, CAMPAIGN_KEY: campaign}
    if ids := list(candidate_ids):
        tag[CANDIDATES_KEY] = ids
    return tag


class MakerSettings(BaseModel):
    """Settings a Maker carries into its jobs. FireWorks serialises job arguments through
    ``as_dict``/``from_dict`` (MSONable), which pydantic models lack, so these provide them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def as_dict(self) -> dict[str, Any]:
        return {"@module": type(self).__module__, "@class": type(self).__name__, **self.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return cls.model_validate({k: v for k, v in data.items() if not k.startswith("@")})


@dataclass
class StageMaker(Maker):
    """A Maker of one stage: every job it creates is tagged with the stage and routed alike.

    ``manager_config`` is what a workflow manager needs to place this stage's jobs (for FireWorks:
    category, priority, queue request); empty when the flow runs in-process.
    """

    stage: ClassVar[Stage]
    campaign: str = ""
    manager_config: dict[str, Any] = field(default_factory=dict)

    def tag(self, job, candidate_ids: Iterable[str] = ()):
        """Tag ``job`` with this stage and give it this stage's manager config; returns it."""
        job.metadata.update(job_tag(self.stage, self.campaign, candidate_ids))
        # jobflow would hand a job's manager config down to the jobs it creates; each of those is
        # tagged by its own stage's Maker instead
        job.update_config({"manager_config": dict(self.manager_config), "pass_manager_config": False},
                          dynamic=False)
        return job
