"""Campaign report from the candidates collection: counts per stage, ranking, hull plots.

Writes ``report.json``, ``report.md`` and one ``hull_<chemsys>.png`` per chemical system into a
folder, and returns a rich table for the terminal.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from rich.table import Table

from flows import candidates as cands
from flows.campaign import Campaign
from flows.candidates import CandidateQuery
from flows.schemas import CandidateState

RANKED_FIELDS = {"candidate_id": 1, "formula": 1, "condition": 1, "e_above_hull": 1, "hull": 1, "relax": 1, "prerelax": 1,
                 "generator": 1, "novel": 1, "matches": 1}


def ranked(coll, campaign: str, limit: int = 20) -> list[dict[str, Any]]:
    """The best ``limit`` distinct relaxed structures; ``twins`` lists candidates that relaxed into the same one."""
    rows = CandidateQuery(campaign).find(coll, limit=limit, projection=RANKED_FIELDS)
    twins: dict[str, list[str]] = {}
    for doc in CandidateQuery(campaign, duplicates=True).find(coll, projection={"candidate_id": 1, "hull": 1}):
        twins.setdefault(doc["hull"]["duplicate_of"], []).append(doc["candidate_id"])
    return [{"rank": i + 1, **cands.summary(d), "twins": sorted(twins.get(d["candidate_id"], []))}
            for i, d in enumerate(rows)]


def failure_reasons(coll, campaign: str, top: int = 5) -> list[tuple[str, int]]:
    """Most common reasons candidates failed, numbers masked so that alike errors group together."""
    docs = CandidateQuery(campaign, stages=(CandidateState.FAILED,), duplicates=None).find(coll, projection={"error": 1})
    reasons = Counter(re.sub(r"-?\d+(\.\d+)?", "#", d.get("error") or "unknown") for d in docs)
    return reasons.most_common(top)


def build_report(campaign: Campaign, coll, db, out_dir: Path, limit: int = 20) -> dict[str, Any]:
    """Write report.json / report.md / hull plots; return the report dict."""
    from flows.funnel import record_funnel
    from flows.makers import stage_makers

    out_dir.mkdir(parents=True, exist_ok=True)
    counts = cands.count_by_stage(coll, campaign.name)
    top = ranked(coll, campaign.name, limit)
    refs = stage_makers(campaign).hull.reference_set(db, progress=False) if top else None
    plots = _plots(campaign, coll, refs, out_dir) if refs else []
    report = {
        "campaign": campaign.name,
        "engine": campaign.relax.engine,
        "is_dft": campaign.relax.engine == "vasp",
        "references": refs.label if refs else None,
        "counts": counts,
        "below_hull": sum(r["below_hull"] for r in top),
        "ranked": top,
        "failures": failure_reasons(coll, campaign.name),
        "plots": [p.name for p in plots],
        "funnel": record_funnel(db, campaign.name, window=campaign.stability_window),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "report.md").write_text(markdown(report))
    return report


def _plots(campaign: Campaign, coll, refs, out_dir: Path) -> list[Path]:
    from flows.hull import plot_hull

    paths = []
    docs = CandidateQuery(campaign.name).find(coll, projection={"candidate_id": 1, "formula": 1, "chemsys": 1, "relax": 1})
    for chemsys in sorted({d["chemsys"] for d in docs}):
        members = [(d["candidate_id"], d["formula"], d["relax"]["energy_per_atom"]) for d in docs if d["chemsys"] == chemsys]
        path = out_dir / f"hull_{chemsys}.png"
        engine = "VASP" if campaign.relax.engine == "vasp" else "MLIP stand-in, not DFT"
        plot_hull(refs, members, set(chemsys.split("-")), path, title=f"{campaign.name}: {chemsys} [{engine}]")
        paths.append(path)
    return paths


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Campaign {report['campaign']}", ""]
    if not report["is_dft"]:
        lines += ["> **Relaxation engine: MLIP stand-in, not DFT.** Energies and hull distances below come from the",
                  "> machine-learned potential for candidates and references alike.", ""]
    from flows import funnel

    lines += [f"References: {report['references']}", "", *funnel.markdown(report["funnel"]), "",
              "## Candidates per stage", "", "| stage | count |", "|---|---|"]
    lines += [f"| {stage} | {n} |" for stage, n in report["counts"].items()]
    lines += ["", "## Lowest energy above hull", "",
              "| rank | composition | spg | E_target (eV/atom) | e_above_hull (eV/atom) | below hull | MLIP e_hull | generator "
              "| known as | candidate | same structure from |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["ranked"]:
        mlip = "" if r["prerelax_e_above_hull"] is None else f"{r['prerelax_e_above_hull']:.3f}"
        lines.append(f"| {r['rank']} | {r['composition']} | {r['spacegroup']} | {r['target_formation_energy']:.3f} | "
                     f"{r['e_above_hull']:.3f} | {'yes' if r['below_hull'] else 'no'} | {mlip} | {r['generator']} | "
                     f"{r['matches'] or ('novel' if r['novel'] else '')} | {r['candidate_id']} | "
                     f"{', '.join(r['twins'])} |")
    if report["failures"]:
        lines += ["", "## Why candidates failed", "", "| reason | count |", "|---|---|"]
        lines += [f"| {reason} | {n} |" for reason, n in report["failures"]]
    lines += ["", *[f"![hull]({p})" for p in report["plots"]], ""]
    return "\n".join(lines)


def rich_table(report: dict[str, Any]) -> Table:
    engine = "MLIP stand-in, NOT DFT" if not report["is_dft"] else "VASP (DFT)"
    counts = ", ".join(f"{stage} {n}" for stage, n in report["counts"].items() if n)
    table = Table(title=f"{report['campaign']}: lowest e_above_hull [{engine}]", caption=counts)
    for column in ("rank", "composition", "spg", "E_target", "e_above_hull", "below hull", "candidate", "twins"):
        table.add_column(column, justify="left" if column in ("composition", "candidate") else "right")
    for r in report["ranked"]:
        table.add_row(str(r["rank"]), r["composition"], str(r["spacegroup"]),
                      f"{r['target_formation_energy']:.3f}", f"{r['e_above_hull']:.3f}",
                      "yes" if r["below_hull"] else "no", r["candidate_id"], str(len(r["twins"])))
    return table
