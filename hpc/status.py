"""Where a submitted campaign stands, read from the database only (no scheduler access needed)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from flows.stages import CAMPAIGN_KEY, STAGE_KEY, Stage

FW_STATES = ("WAITING", "READY", "RESERVED", "RUNNING", "COMPLETED", "FIZZLED", "DEFUSED", "PAUSED", "ARCHIVED")


@dataclass
class CampaignStatus:
    campaign: str
    workflows: int
    fireworks: dict[str, dict[str, int]]  # stage -> state -> count (``untagged``: not a crystalgen job)
    candidates: dict[str, int]  # candidate stage -> count
    lost_fw_ids: list[int] = field(default_factory=list)
    funnel: dict | None = None  # flows.funnel: recorded by the hull stage (None: not yet)

    @property
    def total_fireworks(self) -> int:
        return sum(sum(states.values()) for states in self.fireworks.values())

    def as_dict(self) -> dict:
        return {**asdict(self), "total_fireworks": self.total_fireworks}


def campaign_status(lpad, campaign: str, lost_after_s: float = 4 * 3600, candidates_coll=None,
                    live_funnel: bool = False) -> CampaignStatus:
    """Fireworks per stage and state, candidates per stage, lost runs, and the discovery funnel of
    ``campaign``: the one the hull stage last recorded, or (``live_funnel``) computed now from every
    candidate, which takes seconds at 10^5 candidates."""
    from flows import candidates
    from flows.funnel import campaign_window, record_funnel, recorded_funnel

    rows = lpad.fireworks.aggregate([
        {"$match": {f"spec.{CAMPAIGN_KEY}": campaign}},
        {"$group": {"_id": {"stage": f"$spec.{STAGE_KEY}", "state": "$state"}, "n": {"$sum": 1}}},
    ])
    fireworks: dict[str, dict[str, int]] = {}
    for row in rows:
        stage = row["_id"].get("stage") or "untagged"
        fireworks.setdefault(stage, {})[row["_id"]["state"]] = row["n"]
    order = {stage.value: i for i, stage in enumerate(Stage)}
    fireworks = dict(sorted(fireworks.items(), key=lambda item: order.get(item[0], len(order))))
    _, lost, _ = lpad.detect_lostruns(expiration_secs=lost_after_s, query={f"spec.{CAMPAIGN_KEY}": campaign})
    workflows = lpad.workflows.count_documents({f"metadata.{CAMPAIGN_KEY}": campaign, "state": {"$ne": "ARCHIVED"}})
    coll = candidates_coll if candidates_coll is not None else candidates.collection()
    db = coll.database
    funnel = record_funnel(db, campaign, campaign_window(db, campaign)) if live_funnel else recorded_funnel(db, campaign)
    return CampaignStatus(campaign, workflows, fireworks, candidates.count_by_stage(coll, campaign), sorted(set(lost)),
                          funnel)


def status_tables(status: CampaignStatus):
    """Rich tables: fireworks (stage x state), candidates per stage, and the discovery funnel per generator."""
    from rich.table import Table

    states = [s for s in FW_STATES if any(s in by_state for by_state in status.fireworks.values())]
    fw_table = Table(title=f"campaign {status.campaign}: fireworks ({status.workflows} live workflow(s))")
    fw_table.add_column("stage")
    for state in states:
        fw_table.add_column(state, justify="right")
    fw_table.add_column("total", justify="right")
    for stage, by_state in status.fireworks.items():
        fw_table.add_row(stage, *(str(by_state.get(s, 0)) for s in states), str(sum(by_state.values())))
    cand_table = Table(title="candidates")
    cand_table.add_column("stage")
    cand_table.add_column("count", justify="right")
    for stage, count in status.candidates.items():
        cand_table.add_row(stage, str(count))
    if not status.funnel:
        return fw_table, cand_table
    from flows.funnel import rich_table

    return fw_table, cand_table, rich_table(status.funnel)
