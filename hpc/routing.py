"""Where a campaign's jobs run on FireWorks: each stage's ``resources`` as firework spec entries.

The flows layer tags every job with its stage (``crystalgen_stage`` in the spec) and puts the
manager config it is given for that stage on every job it creates, up front or at run time. This
module decides that config, from the campaign's ``resources`` only: ``_category`` (which workers
pull it), ``_priority`` (earlier stages first by default) and ``_queueadapter`` (what a
reservation-mode ``qlaunch -r`` asks the scheduler for).
"""

from __future__ import annotations

from typing import Any

from flows.resources import Resources
from flows.stages import Stage

RETRIES_KEY = "crystalgen_retries"  # firework spec: how often `crystalgen resubmit` reran it
FINGERPRINT_KEY = "crystalgen_fingerprint"  # workflow metadata: hash of the submitted campaign


def manager_config(resources: Resources) -> dict[str, Any]:
    """Firework spec entries for a job with ``resources`` (priority already filled in)."""
    queue: dict[str, Any] = {"walltime": resources.walltime, "nodes": resources.nodes}
    if resources.gpus:
        queue["gpus"] = resources.gpus
    return {"_category": resources.category, "_priority": resources.priority, "_queueadapter": queue}


def campaign_routing(campaign) -> dict[str, dict[str, Any]]:
    """Stage name -> manager config for every stage of ``campaign``."""
    return {stage.value: manager_config(campaign.resources.of(stage)) for stage in Stage}
