"""What each job costs: wall/CPU seconds and the share spent in science, one ``CostDoc`` per job run.

The funnel divides them by what came out (per stage, per S.U.N. candidate); a rehearsal subtracts the
science share to see the framework's own overhead per candidate.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flows.schemas import CostDoc

COLLECTION = "costs"


@dataclass
class Meter:
    """Handed to the measured block: time the science parts with ``science()``."""

    science_s: float = 0.0
    device: str = "cpu"

    @contextmanager
    def science(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.science_s += time.perf_counter() - start


@contextmanager
def measured(campaign: str, stage, job: str, candidate_ids: Iterable[str] = (), generator: str | None = None) -> Iterator[Meter]:
    """Record the block's cost in ``costs`` when it finishes (also when it raises: that time was spent)."""
    from flows.candidates import database

    meter, wall, cpu = Meter(), time.perf_counter(), time.process_time()
    try:
        yield meter
    finally:
        doc = CostDoc(campaign=campaign, stage=getattr(stage, "value", stage), job=job, candidate_ids=list(candidate_ids),
                      wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu, science_s=meter.science_s,
                      device=meter.device, **({"generator": generator} if generator else {}))
        database()[COLLECTION].insert_one(doc.model_dump())


def stage_costs(db, campaign: str) -> dict[str, dict[str, float]]:
    """Per stage: jobs, wall_s, cpu_s, science_s summed over every recorded run."""
    rows = db[COLLECTION].aggregate([
        {"$match": {"campaign": campaign}},
        {"$group": {"_id": "$stage", "jobs": {"$sum": 1}, "wall_s": {"$sum": "$wall_s"}, "cpu_s": {"$sum": "$cpu_s"},
                    "science_s": {"$sum": "$science_s"}}},
    ])
    return {row.pop("_id"): row for row in rows}
