"""Which worker runs which job: FireWorks category, priority and campaign tag per pipeline stage.

A campaign flow is plain jobflow; dispatch is layered on with jobflow's own idiom,
``flow.update_config({"manager_config": ...}, name_filter=..., dynamic=True)``, the way atomate2
users pin jobs to an fworker. ``dynamic=True`` stores each update on the job, and jobflow replays
it on every job a ``Response`` adds or replaces at run time, so the relax jobs fanned out after
pre-relaxation land on the CPU queue like the static ones.

jobflow also copies a parent's whole ``manager_config`` onto its dynamic children
(``JobConfig.pass_manager_config``) *after* those replays, which would put every job fanned out
by the GPU generate job on the GPU queue. We switch that off for all jobs (again dynamically):
the name rules alone decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

STAGES = ("generate", "prerelax", "relax", "hull")
"""Pipeline order. Earlier stages get higher ``_priority`` so a worker drains them first."""

DEFAULT_CATEGORIES = {"generate": "gpu", "prerelax": "cpu", "relax": "cpu", "hull": "cpu"}
OTHER_STAGE = "other"  # helper jobs (stores, filters) that match no stage: cheap, CPU queue

CAMPAIGN_KEY = "crystalgen_campaign"  # firework spec + workflow metadata: which campaign
STAGE_KEY = "crystalgen_stage"  # firework spec: which pipeline stage
RETRIES_KEY = "crystalgen_retries"  # firework spec: how often `crystalgen resubmit` reran it
FINGERPRINT_KEY = "crystalgen_fingerprint"  # workflow metadata: hash of the submitted campaign

# Job names are matched by substring, in this order; a later rule overrides an earlier one for the
# same job, so "prerelax" (which also contains "relax") must come after "relax".
NAME_RULES: tuple[tuple[str, str], ...] = (
    ("references", "prerelax"),  # relaxes the reference phases with the same MLIP
    ("relax", "relax"),
    ("hull", "hull"),
    ("generate", "generate"),
    ("prerelax", "prerelax"),
)


def stage_priority(stage: str) -> int:
    """``_priority`` for a stage: generate 400 > prerelax 300 > relax 200 > hull 100 > other 50."""
    if stage not in STAGES:
        return 50
    return 100 * (len(STAGES) - STAGES.index(stage))


def stage_of_name(job_name: str | None) -> str:
    """The stage the name rules give a job name (``other`` if none matches)."""
    stage = OTHER_STAGE
    for fragment, rule_stage in NAME_RULES:
        if job_name and fragment in job_name:
            stage = rule_stage
    return stage


@dataclass(frozen=True)
class Dispatch:
    """Where a campaign's stages run. ``categories`` maps stage -> FWorker category."""

    campaign: str
    categories: Mapping[str, str]
    queueadapter: Mapping[str, Mapping] | None = None  # stage -> _queueadapter (reservation mode)

    @classmethod
    def for_campaign(cls, campaign: str, categories: Mapping[str, str] | None = None,
                     queueadapter: Mapping[str, Mapping] | None = None) -> "Dispatch":
        merged = dict(DEFAULT_CATEGORIES)
        for stage, category in (categories or {}).items():
            if stage not in STAGES:
                raise ValueError(f"unknown stage {stage!r} in categories; stages are {', '.join(STAGES)}")
            if not category or not str(category).strip():
                raise ValueError(f"empty category for stage {stage!r}")
            merged[stage] = str(category)
        return cls(campaign=campaign, categories=merged, queueadapter=queueadapter)

    def manager_config(self, stage: str) -> dict:
        """The firework spec entries for a job of ``stage``."""
        config = {
            "_category": self.categories.get(stage, "cpu"),
            "_priority": stage_priority(stage),
            CAMPAIGN_KEY: self.campaign,
            STAGE_KEY: stage,
        }
        if self.queueadapter and self.queueadapter.get(stage):
            config["_queueadapter"] = dict(self.queueadapter[stage])
        return config


def apply_dispatch(flow, dispatch: Dispatch):
    """Set category, priority and campaign tag on every job of ``flow``, now and at run time.

    ``flow`` may be a jobflow Flow or Job; it is changed in place and returned.
    """
    flow.update_config({"pass_manager_config": False}, attributes="pass_manager_config", dynamic=True)
    flow.update_config({"manager_config": dispatch.manager_config(OTHER_STAGE)}, dynamic=True)
    for fragment, stage in NAME_RULES:
        flow.update_config({"manager_config": dispatch.manager_config(stage)}, name_filter=fragment, dynamic=True)
    return flow
