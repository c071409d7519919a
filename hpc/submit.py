"""Put a campaign flow on the LaunchPad as one FireWorks workflow, exactly once.

The flow is converted with jobflow's ``flow_to_workflow`` against the MongoDB JobStore, so workers
on any cluster that reaches the database exchange outputs through it. Every firework carries its
stage's routing (``hpc.routing``) and tag; the workflow's metadata carries the campaign name and a
fingerprint of what was submitted, which is how a second ``submit`` of the same campaign is
recognised and refused unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flows.stages import CAMPAIGN_KEY
from hpc.routing import FINGERPRINT_KEY, campaign_routing


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


def live_workflows(lpad, campaign: str) -> list[dict]:
    """Workflows of ``campaign`` that are not archived (their ``metadata`` and root fw ids)."""
    query = {f"metadata.{CAMPAIGN_KEY}": campaign, "state": {"$ne": "ARCHIVED"}}
    return list(lpad.workflows.find(query, {"nodes": 1, "metadata": 1, "state": 1}).sort("created_on", 1))


def refuse_resubmission(lpad, campaign: str, fingerprint: str | None, force: bool) -> list[dict]:
    """The campaign's live workflows; raises AlreadySubmitted when there are some and ``force`` is off."""
    existing = live_workflows(lpad, campaign)
    if existing and not force:
        same = all(wf["metadata"].get(FINGERPRINT_KEY) == fingerprint for wf in existing)
        raise AlreadySubmitted(campaign, [min(wf["nodes"]) for wf in existing], same)
    return existing


def submit_flow(flow, campaign: str, *, lpad=None, store=None, force: bool = False,
                content_fingerprint: str | None = None) -> Submission:
    """Add ``flow`` (jobs already routed) to the LaunchPad as the workflow of ``campaign``.

    Raises AlreadySubmitted if the campaign already has a live workflow and ``force`` is False.
    """
    from jobflow.managers.fireworks import flow_to_workflow

    from crystalgen.db import job_store, launchpad

    lpad = lpad or launchpad()
    existing = refuse_resubmission(lpad, campaign, content_fingerprint, force)
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


def submit_campaign(path, force: bool = False, lpad=None, store=None, structures=None) -> Submission:
    """Load, validate, record and submit a campaign file (``crystalgen campaign submit``).

    ``structures`` (reduced formula -> pymatgen dicts) replaces the generative model (tests, seeding).
    """
    from crystalgen.db import launchpad
    from flows.campaign import load_campaign
    from flows.campaign_store import campaign_fingerprint, potential_record, record_campaign
    from flows.candidates import database
    from flows.makers import CampaignMaker, mlip_settings
    from flows.preflight import preflight

    campaign = load_campaign(path, check_checkpoint=structures is None)
    preflight(campaign, checkpoint=structures is None)
    flow = CampaignMaker(structures=structures, manager_configs=campaign_routing(campaign)).make(campaign)
    prerelax, relax = mlip_settings(campaign)
    lpad = lpad or launchpad()
    fingerprint = campaign_fingerprint(campaign)
    refuse_resubmission(lpad, campaign.name, fingerprint, force)  # before anything is recorded
    record_campaign(database(), campaign, potential_record(prerelax, loaded=False),
                    potential_record(relax, loaded=False) if campaign.relax.engine == "mlip" else None,
                    None if structures is not None else str(campaign.checkpoint_path()))
    return submit_flow(flow, campaign.name, lpad=lpad, store=store, force=force, content_fingerprint=fingerprint)
