"""The discovery funnel: how many candidates survive each step, and what a stable, unique, novel one cost.

Per campaign, overall and broken down by generator, method, composition, space group and energy
scheme: generated -> valid at generation (rescued ones counted apart) -> pre-relaxed without failing
the relaxer's checks -> converged -> relaxed -> unique (ranked, not the twin of a better one) ->
novel (matches no reference phase nor training structure) -> stable (e_above_hull <= 0) and within
the window (<= ``window``, 0.1 eV/atom by default). S.U.N. = stable, unique and novel (the field's
usual measure, e.g. MatterGen's). Cost: the jobs' wall seconds (``flows.costs``), shared out over the
candidates each job worked on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from flows.schemas import CandidateState

#: e_above_hull (eV/atom) still counted as stable within the window, unless the campaign says otherwise
DEFAULT_WINDOW = 0.1
STEPS = ("generated", "valid", "rescued", "prerelaxed", "converged", "relaxed", "unique", "novel", "stable",
         "within_window", "sun", "sun_within_window")
BREAKDOWNS = {"generator": ("generator",), "method": ("model", "method"), "composition": ("condition", "formula"),
              "spacegroup": ("condition", "spacegroup"), "scheme": ("condition", "scheme")}
#: only what the steps and breakdowns read (a campaign of 10^5 candidates is read in full)
FIELDS = {"_id": 0, "candidate_id": 1, "stage": 1, "error": 1, "generator": 1, "model.method": 1, "condition.formula": 1,
          "condition.spacegroup": 1, "condition.scheme": 1, "rescue": 1, "prerelax.converged": 1,
          "relax.energy_per_atom": 1, "hull.duplicate_of": 1, "e_above_hull": 1, "novel": 1}
TOLERANCE = 1e-6  # eV/atom, as the hull stage's below-hull flag


def steps_of(doc: dict[str, Any], window: float) -> dict[str, bool]:
    """Which funnel steps one stored candidate reached."""
    failed_at_generation = doc.get("stage") == CandidateState.FAILED.value and (doc.get("error") or "").startswith(
        "generation")
    prerelax, relax, hull = doc.get("prerelax") or {}, doc.get("relax") or {}, doc.get("hull") or {}
    unique = doc.get("stage") == CandidateState.RANKED.value and not hull.get("duplicate_of")
    novel = unique and doc.get("novel") is True
    e_hull = doc.get("e_above_hull")
    stable = unique and e_hull is not None and e_hull <= TOLERANCE
    within = unique and e_hull is not None and e_hull <= window + TOLERANCE
    return {"generated": True, "valid": not failed_at_generation, "rescued": bool(doc.get("rescue")),
            "prerelaxed": "converged" in prerelax, "converged": bool(prerelax.get("converged")),
            "relaxed": relax.get("energy_per_atom") is not None, "unique": unique, "novel": novel, "stable": stable,
            "within_window": within, "sun": novel and stable, "sun_within_window": novel and within}


def _value(doc: dict[str, Any], path: tuple[str, ...]) -> str:
    for key in path:
        doc = (doc or {}).get(key) if isinstance(doc, dict) else None
    return "model" if doc is None and path == ("generator",) else str(doc)


def _costs(db, campaign: str) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """(seconds per candidate id per stage, generate seconds per generator) from the recorded job costs."""
    from flows.costs import COLLECTION

    per_candidate: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    per_generator: dict[str, float] = defaultdict(float)
    for cost in db[COLLECTION].find({"campaign": campaign}, {"stage": 1, "candidate_ids": 1, "wall_s": 1, "generator": 1}):
        ids = cost.get("candidate_ids") or []
        if ids:
            for cid in ids:
                per_candidate[cid][cost["stage"]] += cost["wall_s"] / len(ids)
        elif cost["stage"] == "generate":
            per_generator[cost.get("generator") or "model"] += cost["wall_s"]
    return per_candidate, per_generator


def campaign_funnel(db, campaign: str, window: float = DEFAULT_WINDOW, docs: Iterable[dict] | None = None) -> dict[str, Any]:
    """``{"overall": row, "by": {breakdown: {value: row}}}``; a row has every step's count, the S.U.N.
    rate per generated candidate and the seconds per stage and per S.U.N. candidate."""
    per_candidate, generate_s = _costs(db, campaign)
    docs = docs if docs is not None else db["candidates"].find({"campaign": campaign}, FIELDS)
    overall: dict[str, Any] = _empty()
    by: dict[str, dict[str, dict[str, Any]]] = {name: defaultdict(_empty) for name in BREAKDOWNS}
    generated_by_generator: dict[str, int] = defaultdict(int)
    for doc in docs:
        steps = steps_of(doc, window)
        seconds = per_candidate.get(doc["candidate_id"], {})
        rows = [overall] + [by[name][_value(doc, path)] for name, path in BREAKDOWNS.items()]
        generated_by_generator[_value(doc, ("generator",))] += 1
        for row in rows:
            for step, reached in steps.items():
                row[step] += reached
            for stage, s in seconds.items():
                row["seconds"][stage] = row["seconds"].get(stage, 0.0) + s
            row["_generator"][_value(doc, ("generator",))] += 1
    for row in [overall, *(r for rows in by.values() for r in rows.values())]:
        _finish(row, generate_s, generated_by_generator)
    return {"window": window, "overall": overall, "by": {name: dict(rows) for name, rows in by.items()}}


def _empty() -> dict[str, Any]:
    return {**dict.fromkeys(STEPS, 0), "seconds": {}, "_generator": defaultdict(int)}


def _finish(row: dict[str, Any], generate_s: dict[str, float], generated_by_generator: dict[str, int]) -> None:
    """Add the generate stage's share (by generator), the S.U.N. rate and the cost per S.U.N. candidate."""
    share = sum(generate_s.get(g, 0.0) * n / generated_by_generator[g] for g, n in row.pop("_generator").items()
                if generated_by_generator.get(g))
    if share:
        row["seconds"] = {"generate": share, **row["seconds"]}
    row["sun_rate"] = row["sun"] / row["generated"] if row["generated"] else 0.0
    total = sum(row["seconds"].values())
    row["seconds_total"] = total
    row["seconds_per_sun"] = total / row["sun"] if row["sun"] else None


COLUMNS = (("generated", "generated"), ("valid", "valid"), ("rescued", "rescued"), ("prerelaxed", "pre-relaxed"),
           ("converged", "converged"), ("relaxed", "relaxed"), ("unique", "unique"), ("novel", "novel"),
           ("stable", "stable"), ("within_window", "<= window"), ("sun", "S.U.N."))


def markdown_table(rows: dict[str, dict[str, Any]], label: str, window: float) -> list[str]:
    """A Markdown table of funnel rows (one per group value)."""
    head = [label, *(title.replace("window", f"{window:g}") for _, title in COLUMNS), "S.U.N. rate", "s per S.U.N."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        per_sun = "" if row["seconds_per_sun"] is None else f"{row['seconds_per_sun']:.0f}"
        cells = [str(name), *(str(row[key]) for key, _ in COLUMNS), f"{100 * row['sun_rate']:.1f} %", per_sun]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(funnel: dict[str, Any]) -> list[str]:
    """The report's funnel section: overall and per generator; per method, composition, group and scheme."""
    window = funnel["window"]
    lines = ["## Discovery funnel", "",
             f"S.U.N. = stable (e_above_hull <= 0), unique (not the twin of a better candidate) and novel (no reference "
             f"phase or training structure matches). Window: e_above_hull <= {window:g} eV/atom. Rescued candidates "
             "were repaired before pre-relaxation and are counted among the valid ones.", ""]
    lines += markdown_table({"all": funnel["overall"], **funnel["by"]["generator"]}, "generator", window)
    for name in ("method", "composition", "spacegroup", "scheme"):
        if len(funnel["by"][name]) > 1:
            lines += ["", f"By {name}:", "", *markdown_table(funnel["by"][name], name, window)]
    return lines


FUNNELS = "funnels"


def record_funnel(db, campaign: str, window: float = DEFAULT_WINDOW) -> dict[str, Any]:
    """Compute the funnel and keep it in ``funnels`` (one per campaign), so that ``campaign status``
    shows it without reading every candidate of a large campaign."""
    from datetime import UTC, datetime

    funnel = {**campaign_funnel(db, campaign, window=window), "recorded_at": datetime.now(UTC).isoformat()}
    db[FUNNELS].replace_one({"campaign": campaign}, {"campaign": campaign, "funnel": funnel}, upsert=True)
    return funnel


def recorded_funnel(db, campaign: str) -> dict[str, Any] | None:
    """The funnel last recorded for ``campaign`` (by the hull stage, a report or ``status --funnel``)."""
    doc = db[FUNNELS].find_one({"campaign": campaign}, {"_id": 0, "funnel": 1})
    return doc["funnel"] if doc else None


def campaign_window(db, campaign: str) -> float:
    """The stability window the campaign was run with (its recorded file), else the default."""
    from flows.campaign_store import read_campaign

    doc = read_campaign(db, campaign)
    return float((doc.campaign if doc else {}).get("stability_window", DEFAULT_WINDOW))


def rich_table(funnel: dict[str, Any]):
    """The funnel as a rich table, one column per generator (narrow terminals: steps run down the rows)."""
    from rich.table import Table

    window = funnel["window"]
    rows = {"all": funnel["overall"], **funnel["by"]["generator"]}
    recorded = f", recorded {funnel['recorded_at'][:19]} UTC" if funnel.get("recorded_at") else ""
    table = Table(title=f"discovery funnel (window {window:g} eV/atom{recorded})")
    table.add_column("step")
    for name in rows:
        table.add_column(str(name), justify="right")
    for key, title in COLUMNS:
        table.add_row(title.replace("window", f"{window:g}"), *(str(row[key]) for row in rows.values()))
    table.add_row("S.U.N. rate", *(f"{100 * row['sun_rate']:.1f} %" for row in rows.values()))
    return table
