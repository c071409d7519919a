"""Energy above the convex hull of the reference phases, one pymatgen PhaseDiagram per chemical system.

Candidates are ranked against the references only (not against each other), so a candidate's
e_above_hull does not change when other candidates are added. Energies must come from one source:
:func:`check_sources` refuses to put, e.g., MLIP energies on a DFT hull, or 500 eV VASP energies on
Materials Project's 520 eV hull, unless the campaign names a compatibility scheme it accepts
(``references.compatibility``); the scheme and the mismatch are then recorded on every result.
No energy corrections are applied here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from flows import energies
from flows.references import ReferenceSet

BELOW_HULL_TOL = 1e-6  # eV/atom


class EnergySourceMismatch(ValueError):
    """Candidate and reference energies were computed with different settings."""


@dataclass(frozen=True)
class HullResult:
    e_above_hull: float
    decomposition: dict[str, float]  # reference phase name (formula) -> fraction
    below_hull: bool
    chemsys: str


def check_sources(candidate_sources: Sequence[dict[str, Any]], references: ReferenceSet, compatibility: str | None) -> list[str]:
    """Raise :class:`EnergySourceMismatch` unless every source matches the references' (or a scheme is set).

    Returns warnings to record when a compatibility scheme allowed a mismatch.
    """
    warnings = []
    for source in {tuple(sorted(s.items())) for s in candidate_sources}:
        diff = energies.mismatch(dict(source), references.energy_source)
        if not diff:
            continue
        detail = "; ".join(f"{k}: candidates {a!r} vs references {b!r}" for k, (a, b) in diff.items())
        if compatibility is None:
            raise EnergySourceMismatch(
                f"refusing to mix energies from different sources on one hull ({detail}); references are "
                f"{references.label}. Recompute references with the campaign's settings, or set "
                "references.compatibility to an explicit scheme."
            )
        warnings.append(f"mixed energy sources accepted under compatibility scheme {compatibility!r}: {detail}")
    return warnings


def e_above_hull(candidates: Sequence[tuple[str, str, float]], references: ReferenceSet) -> dict[str, HullResult]:
    """``candidates`` = (candidate_id, formula, energy_per_atom); returns results by candidate id."""
    by_chemsys: dict[frozenset, list[tuple[str, Composition, float]]] = defaultdict(list)
    for cid, formula, energy in candidates:
        comp = Composition(formula)
        by_chemsys[frozenset(el.symbol for el in comp.elements)].append((cid, comp, energy))
    out: dict[str, HullResult] = {}
    for elements, members in by_chemsys.items():
        pd = references.phase_diagram(set(elements))
        chemsys = "-".join(sorted(elements))
        for cid, comp, energy in members:
            entry = PDEntry(comp, energy * comp.num_atoms, name=cid)
            decomp, ehull = pd.get_decomp_and_e_above_hull(entry, allow_negative=True)
            out[cid] = HullResult(
                e_above_hull=float(ehull),
                decomposition={f"{e.name} ({e.composition.reduced_formula})": float(x) for e, x in decomp.items()},
                below_hull=bool(ehull < -BELOW_HULL_TOL),
                chemsys=chemsys,
            )
    return out


def plot_hull(
    references: ReferenceSet, candidates: Sequence[tuple[str, str, float]], elements: set[str], path, title: str = ""
) -> None:
    """PNG of the hull of references plus candidates (marked *) via pymatgen's PDPlotter (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pymatgen.analysis.phase_diagram import PDPlotter

    entries = references.pd_entries(elements)
    entries += [PDEntry(Composition(f), e * Composition(f).num_atoms, name=f"{Composition(f).reduced_formula}*")
                for _cid, f, e in candidates]
    plotter = PDPlotter(PhaseDiagram(entries), backend="matplotlib", show_unstable=0.2)
    ax = plotter.get_plot()
    fig = ax.get_figure() if hasattr(ax, "get_figure") else plt.gcf()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
