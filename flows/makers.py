"""``CampaignMaker``: campaign -> jobflow Flow (references -> generate -> pre-relax -> select -> relax -> hull).

Only the first three jobs exist up front; pre-relax chunks, the VASP relaxations and the hull job
are created by the jobs before them (dynamic fan-out), once their number is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobflow import Flow, Maker

from flows.campaign import Campaign
from flows.jobs import campaign_to_dict, generate_job, prerelax_stage, references_job, set_category


@dataclass
class CampaignMaker(Maker):
    """Build the whole campaign flow.

    ``structures`` (reduced formula -> pymatgen structure dicts) replaces the generative model, e.g.
    to seed a campaign with known prototypes; empty: sample with the campaign's checkpoint.
    """

    name: str = "campaign"
    structures: dict[str, list[dict]] | None = field(default=None)

    def make(self, campaign: Campaign) -> Flow:
        data = campaign_to_dict(campaign)
        references = references_job(data)
        generate = generate_job(data, references.output["hull_formation_energy"], self.structures)
        prerelax = prerelax_stage(data, generate.output)
        set_category(references, "prerelax", campaign)
        set_category(generate, "generate", campaign)
        set_category(prerelax, "hull", campaign)
        return Flow([references, generate, prerelax], output=prerelax.output, name=f"{self.name} {campaign.name}")
