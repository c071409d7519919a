"""The ``campaigns`` collection: what each campaign was run or submitted with (one :class:`CampaignDoc` each)."""

from __future__ import annotations

import hashlib
import json

from flows.campaign import Campaign, CampaignError
from flows.energies import MlipSettings
from flows.schemas import CampaignDoc, PotentialRecord, now

COLLECTION = "campaigns"


def campaign_fingerprint(campaign: Campaign) -> str:
    """A stable hash of the validated campaign (what defines its work)."""
    return hashlib.sha256(json.dumps(campaign.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def potential_record(settings: MlipSettings, loaded: bool) -> PotentialRecord:
    """The potential as resolved; with ``loaded`` also its name and version (loads and checks it)."""
    if not loaded:
        return PotentialRecord(spec=settings.potential)
    potential = settings.loaded()
    return PotentialRecord(spec=settings.potential, name=potential.name, version=potential.version)


def read_campaign(db, name: str) -> CampaignDoc | None:
    doc = db[COLLECTION].find_one({"name": name})
    return CampaignDoc.from_mongo(doc) if doc else None


def record_campaign(db, campaign: Campaign, prerelax: PotentialRecord, relax: PotentialRecord | None,
                    checkpoint: str | None) -> CampaignDoc:
    """Store what ``campaign`` resolved to; refuses a campaign name already run with another potential.

    Candidate ids derive from the conditions only, so a rerun with another potential would mix two
    potentials' energies in one ranking.
    """
    old = read_campaign(db, campaign.name)
    for label, before, after in (("prerelax.potential", old and old.prerelax_potential, prerelax),
                                 ("relax.potential", old and old.relax_potential, relax)):
        if before and after and before.spec != after.spec:
            raise CampaignError(f"{label}: campaign {campaign.name!r} was run with potential {before.spec!r}, this one "
                                f"resolves to {after.spec!r} (settings or file changed?); use a new campaign name")
    doc = CampaignDoc(name=campaign.name, campaign=campaign.model_dump(mode="json"),
                      fingerprint=campaign_fingerprint(campaign), prerelax_potential=prerelax, relax_potential=relax,
                      checkpoint=checkpoint, created_at=old.created_at if old else now())
    db[COLLECTION].create_index("name", unique=True)
    db[COLLECTION].replace_one({"name": campaign.name}, doc.model_dump(), upsert=True)
    return doc


def known_campaigns(db) -> list[str]:
    """Names of the campaigns this database holds (recorded, or with candidates from before records existed)."""
    return sorted(set(db[COLLECTION].distinct("name")) | set(db["candidates"].distinct("campaign")))
