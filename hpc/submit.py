"""Put a campaign flow on the LaunchPad as one FireWorks workflow, exactly once.

The flow is converted with jobflow's ``flow_to_workflow`` against the MongoDB JobStore, so workers
on any cluster that reaches the database exchange outputs through it. Every firework carries the
campaign tag, its stage, ``_category`` and ``_priority`` (see ``hpc.dispatch``); the workflow's
metadata carries the campaign name and a fingerprint of what was submitted, which is how a
second ``submit`` of the same campaign is recognised and refused unless forced.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from hpc.dispatch import CAMPAIGN_KEY, FINGERPRINT_KEY, Dispatch, apply_dispatch


class AlreadySubmitted(RuntimeError):
    """The campaign already has a live workflow; ``force=True`` archives it and submits anew."""

    def __init__(self, campaign: str, fw_ids: list[int], same_content: bool) -> None:
        self.campaign, self.fw_ids, self.same_content = campaign, fw_ids, same_content
        change = "unchanged" if same_content else "CHANGED since then"
        super().__init__(
            f"campaign {campaign!r} is already submitted (workflow root fw_id {fw_ids[0]}; campaign {change}); "
            "nothing was added. Use --force to archive that workflow and submit again."
        )


@dataclass
class Submission:
    campaign: str
    root_fw_ids: list[int]
    n_fireworks: int
    fw_ids: dict[str, int] = field(default_factory=dict)  # job uuid -> fw_id
    archived: list[int] = field(default_factory=list)  # root fw_ids of workflows replaced by --force


def fingerprint(payload) -> str:
    """A stable hash of what defines the submitted work (the campaign document)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def live_workflows(lpad, campaign: str) -> list[dict]:
    """Workflows of ``campaign`` that are not archived (their ``metadata`` and root fw ids)."""
    query = {f"metadata.{CAMPAIGN_KEY}": campaign, "state": {"$ne": "ARCHIVED"}}
    return list(lpad.workflows.find(query, {"nodes": 1, "metadata": 1, "state": 1}).sort("created_on", 1))


def submit_flow(flow, campaign: str, *, lpad=None, store=None, force: bool = False,
                categories: dict[str, str] | None = None, queueadapter: dict | None = None,
                content_fingerprint: str | None = None) -> Submission:
    """Dispatch-configure ``flow`` and add it to the LaunchPad as the workflow of ``campaign``.

    Raises AlreadySubmitted if the campaign already has a live workflow and ``force`` is False.
    """
    from jobflow.managers.fireworks import flow_to_workflow

    from crystalgen.db import job_store, launchpad

    lpad = lpad or launchpad()
    existing = live_workflows(lpad, campaign)
    if existing and not force:
        same = all(wf["metadata"].get(FINGERPRINT_KEY) == content_fingerprint for wf in existing)
        raise AlreadySubmitted(campaign, [min(wf["nodes"]) for wf in existing], same)

    apply_dispatch(flow, Dispatch.for_campaign(campaign, categories, queueadapter))
    metadata = {CAMPAIGN_KEY: campaign, FINGERPRINT_KEY: content_fingerprint}
    workflow = flow_to_workflow(flow, store=store or job_store(), name=f"crystalgen:{campaign}", metadata=metadata)

    archived = []
    for wf in existing:  # only reached with force: the old work stops being handed out
        root = min(wf["nodes"])
        lpad.archive_wf(root)
        archived.append(root)
    job_ids = {fw.fw_id: fw.tasks[0]["job"].uuid for fw in workflow.fws}
    root_ids = list(workflow.root_fw_ids)
    old_to_new = lpad.add_wf(workflow)  # renumbers the workflow's fireworks in place
    fw_ids = {job_ids[old]: new for old, new in old_to_new.items()}
    roots = sorted(old_to_new[fw_id] for fw_id in root_ids)
    return Submission(campaign=campaign, root_fw_ids=roots, n_fireworks=len(workflow.fws),
                      fw_ids=fw_ids, archived=archived)


def campaign_dispatch(campaign) -> tuple[dict[str, str], dict[str, dict]]:
    """Categories and reservation-mode queue requests per stage from the campaign's ``resources``."""
    from hpc.dispatch import STAGES

    categories, queue = {}, {}
    for stage in STAGES:
        resources = getattr(campaign.resources, stage)
        categories[stage] = resources.category
        queue[stage] = {"walltime": resources.walltime, "nodes": resources.nodes}
        if resources.gpus:
            queue[stage]["gpus"] = resources.gpus
    return categories, queue


def submit_campaign(path, force: bool = False, lpad=None, store=None, maker=None) -> Submission:
    """Load, validate and submit a campaign file (``crystalgen campaign submit``)."""
    from flows.campaign import load_campaign
    from flows.jobs import campaign_to_dict
    from flows.makers import CampaignMaker

    campaign = load_campaign(path, check_checkpoint=maker is None or getattr(maker, "structures", None) is None)
    flow = (maker or CampaignMaker()).make(campaign)
    categories, queue = campaign_dispatch(campaign)
    content = {k: v for k, v in campaign_to_dict(campaign).items() if k != "base_dir"}
    return submit_flow(flow, campaign.name, lpad=lpad, store=store, force=force, categories=categories,
                       queueadapter=queue, content_fingerprint=fingerprint(content))
