"""Reference phases of the convex hull, with energies from one known source.

Structures come from a reference *file* (default: the shipped Ta-W-B phases) or from ``mp-api``
(Materials Project entries of the chemical system; network and API key needed once, then cached in
the ``hull_references`` collection). Energies:

* MLIP: the structures relaxed with given :class:`~flows.energies.MlipSettings` (potential, fmax,
  steps), cached in ``hull_references`` keyed by structures and settings. Candidates are always
  compared with references relaxed by the same settings as themselves;
* VASP with ``references.recompute`` (default): the structures relaxed by the same atomate2
  RelaxMaker and INCAR as the candidates (jobs in the campaign flow), one cached document per phase
  and INCAR in ``reference_energies``;
* VASP without recompute: the energies stored with the references (a file's declared
  ``energy_source``, or MP's 520 eV PBE(+U) setup); the hull refuses them when the settings differ.

File format (JSON): ``{"description": str, "energy_source": null | {...}, "phases": [{"name": str,
"structure": <pymatgen dict> | absent, "composition": str (when no structure),
"energy_per_atom": float (when energy_source is set)}]}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Structure

from flows import energies
from flows.energies import MlipSettings
from flows.stages import MakerSettings

COLLECTION = "hull_references"
PHASE_COLLECTION = "reference_energies"


def default_reference_file() -> Path:
    return Path(str(resources.files("flows") / "assets" / "references" / "tawb_constructed.json"))


class ReferenceError(ValueError):
    """References that cannot be used for this campaign (missing elements, no energies, ...)."""


class ReferenceSource(MakerSettings):
    """Where a campaign's reference phases come from: a file (absolute path) or Materials Project."""

    kind: Literal["file", "mp-api"] = "file"
    file: str | None = None
    elements: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        path = Path(self.file) if self.file else default_reference_file()
        if not path.is_file():
            raise ReferenceError(f"references.file: reference file not found: {path}")
        return path

    @property
    def label(self) -> str:
        return f"Materials Project ({self.chemsys})" if self.kind == "mp-api" else self.path.name

    @property
    def chemsys(self) -> str:
        return "-".join(sorted(self.elements))


@dataclass
class ReferenceSet:
    """Reference phases with energies per atom from ONE source."""

    entries: list[dict[str, Any]]  # name, formula (reduced), energy_per_atom, structure (dict or None)
    energy_source: dict[str, Any]
    label: str  # where they came from, for reports
    notes: list[str] = field(default_factory=list)
    _diagrams: dict[frozenset, PhaseDiagram] = field(default_factory=dict, init=False, repr=False, compare=False)

    def pd_entries(self, elements: set[str] | None = None) -> list[PDEntry]:
        out = []
        for entry in self.entries:
            comp = Composition(entry["formula"])
            if elements is None or {el.symbol for el in comp.elements} <= elements:
                out.append(PDEntry(comp, entry["energy_per_atom"] * comp.num_atoms, name=entry["name"]))
        return out

    def phase_diagram(self, elements: set[str]) -> PhaseDiagram:
        """The reference hull of the chemical system ``elements`` (built once per system)."""
        key = frozenset(elements)
        if key not in self._diagrams:
            entries = self.pd_entries(set(key))
            present = {el.symbol for e in entries if e.composition.is_element for el in e.composition.elements}
            if missing := sorted(key - present):
                raise ReferenceError(f"references ({self.label}) have no elemental phase for {', '.join(missing)}")
            self._diagrams[key] = PhaseDiagram(entries)
        return self._diagrams[key]

    def hull_formation_energy(self, formula: str) -> float:
        """Formation energy per atom of the hull at ``formula`` (eV/atom)."""
        comp = Composition(formula)
        pd = self.phase_diagram({el.symbol for el in comp.elements})
        return float(pd.get_hull_energy_per_atom(comp) - pd.get_reference_energy_per_atom(comp))

    def as_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "energy_source": self.energy_source, "label": self.label, "notes": self.notes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceSet:
        return cls(data["entries"], data["energy_source"], data["label"], data.get("notes", []))


def read_reference_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        phases = data["phases"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ReferenceError(f"references.file: {path} is not a reference file ({exc})") from None
    if not phases:
        raise ReferenceError(f"references.file: {path} lists no phases")
    return data


def _formula(phase: dict[str, Any]) -> str:
    if phase.get("structure"):
        return Structure.from_dict(phase["structure"]).composition.reduced_formula
    return Composition(phase["composition"]).reduced_formula


def file_elements(path: Path) -> set[str]:
    return {el.symbol for p in read_reference_file(path)["phases"] for el in Composition(_formula(p)).elements}


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _cached(db, key: dict[str, Any]) -> ReferenceSet | None:
    doc = db[COLLECTION].find_one({"key_hash": _digest(key)})
    return ReferenceSet.from_dict(doc["references"]) if doc else None


def _store(db, key: dict[str, Any], refs: ReferenceSet) -> None:
    db[COLLECTION].update_one({"key_hash": _digest(key)},
                              {"$set": {"key": key, "references": refs.as_dict(), "created_at": datetime.now(UTC)}},
                              upsert=True)


def reference_phases(source: ReferenceSource, db) -> list[dict[str, Any]]:
    """The reference structures (name, structure dict) that are relaxed with the campaign's settings.

    From MP only the phases on MP's own hull are taken: they are the ones that can shape ours.
    """
    if source.kind == "mp-api":
        refs = mp_references(source, db)
        stable = {e.name for e in PhaseDiagram(refs.pd_entries()).stable_entries}
        return [{"name": e["name"], "structure": e["structure"]} for e in refs.entries
                if e["name"] in stable and e.get("structure")]
    return [{"name": p["name"], "structure": p["structure"]} for p in read_reference_file(source.path)["phases"]
            if p.get("structure")]


def mlip_references(source: ReferenceSource, mlip: MlipSettings, db, progress: bool = True) -> ReferenceSet:
    """The reference structures relaxed with ``mlip`` (cached per structures, potential and settings)."""
    potential = mlip.loaded()
    phases = reference_phases(source, db)
    key = {"kind": "mlip", "phases_sha256": _digest(phases), "potential": potential.version,
           "fmax": mlip.fmax, "steps": mlip.steps}
    if cached := _cached(db, key):
        return cached
    if not phases:
        raise ReferenceError(f"references ({source.label}) have no structures to relax with {potential.name}")
    results = mlip.relax([Structure.from_dict(p["structure"]) for p in phases],
                         description=f"references ({potential.name})", progress=progress)
    entries, notes = [], []
    for phase, result in zip(phases, results, strict=True):
        if result.error or result.energy_per_atom is None:
            notes.append(f"{phase['name']}: dropped, relaxation failed ({result.error})")
            continue
        if not result.converged:
            notes.append(f"{phase['name']}: not converged in {result.steps} steps (fmax {result.fmax:.3f})")
        entries.append({"name": phase["name"], "formula": result.structure.composition.reduced_formula,
                        "energy_per_atom": float(result.energy_per_atom), "structure": result.structure.as_dict()})
    label = f"{source.label} relaxed with {potential.name} (fmax {mlip.fmax}, {mlip.steps} steps)"
    refs = ReferenceSet(entries, energies.mlip_source(potential.name), label, notes)
    _store(db, key, refs)
    return refs


def stored_references(source: ReferenceSource, db) -> ReferenceSet:
    """Energies as stored with the references: the file's declared energy source, or Materials Project's."""
    if source.kind == "mp-api":
        return mp_references(source, db)
    path = source.path
    data = read_reference_file(path)
    if not data.get("energy_source"):
        raise ReferenceError(f"references.file: {path} has structures but no energies; a VASP hull needs reference "
                             "energies computed with the same settings (a file with energy_source and energy_per_atom)")
    entries = []
    for phase in data["phases"]:
        if "energy_per_atom" not in phase:
            raise ReferenceError(f"references.file: phase {phase.get('name')!r} in {path} has no energy_per_atom")
        entries.append({"name": phase["name"], "formula": _formula(phase),
                        "energy_per_atom": float(phase["energy_per_atom"]), "structure": phase.get("structure")})
    return ReferenceSet(entries, dict(data["energy_source"]), path.name)


def mp_references(source: ReferenceSource, db, api_key: str | None = None) -> ReferenceSet:
    """Materials Project entries of the chemical system, cached in the database after the first fetch."""
    key = {"kind": "mp-api", "chemsys": source.chemsys}
    if cached := _cached(db, key):
        return cached
    from mp_api.client import MPRester

    with MPRester(api_key) as mpr:
        fetched = mpr.get_entries_in_chemsys(sorted(source.elements))
    entries = [{"name": e.entry_id, "formula": e.composition.reduced_formula, "energy_per_atom": e.energy_per_atom,
                "structure": e.structure.as_dict() if getattr(e, "structure", None) else None} for e in fetched]
    refs = ReferenceSet(entries, dict(energies.MATERIALS_PROJECT_SOURCE), source.label)
    _store(db, key, refs)
    return refs


# --------------------------------------------------------------------------- VASP-recomputed references


def vasp_reference_key(incar: dict[str, Any], phase: dict[str, Any]) -> str:
    """Cache key of one phase's VASP energy: its input structure and the campaign's INCAR."""
    return _digest({"structure": phase["structure"], "incar": incar})


def missing_vasp_references(source: ReferenceSource, incar: dict[str, Any], db) -> list[dict[str, Any]]:
    """Reference phases without a VASP energy for ``incar`` yet (each gets a relax job)."""
    phases = reference_phases(source, db)
    keys = [vasp_reference_key(incar, p) for p in phases]
    done = {d["key"] for d in db[PHASE_COLLECTION].find({"key": {"$in": keys}}, {"key": 1})}
    return [p for p, key in zip(phases, keys, strict=True) if key not in done]


def record_vasp_reference(db, key: str, name: str, structure: dict, energy_per_atom: float,
                          energy_source: dict[str, Any], job_uuid: str) -> None:
    db[PHASE_COLLECTION].update_one({"key": key}, {"$set": {
        "key": key, "name": name, "formula": Structure.from_dict(structure).composition.reduced_formula,
        "structure": structure, "energy_per_atom": energy_per_atom, "energy_source": energy_source,
        "job_uuid": job_uuid, "created_at": datetime.now(UTC)}}, upsert=True)


def vasp_references(source: ReferenceSource, incar: dict[str, Any], db) -> ReferenceSet:
    """The reference phases' energies from the campaign's own VASP settings (all must be computed)."""
    phases = reference_phases(source, db)
    keys = {vasp_reference_key(incar, p): p["name"] for p in phases}
    docs = list(db[PHASE_COLLECTION].find({"key": {"$in": list(keys)}}))
    if missing := sorted(set(keys.values()) - {d["name"] for d in docs}):
        raise ReferenceError(f"no VASP energy yet for reference phase(s) {', '.join(missing)} "
                             "(their relaxations failed or did not run)")
    sources = {json.dumps(d["energy_source"], sort_keys=True) for d in docs}
    if len(sources) != 1:
        raise ReferenceError(f"reference phases were computed with different settings: {sorted(sources)}")
    entries = [{"name": d["name"], "formula": d["formula"], "energy_per_atom": d["energy_per_atom"],
                "structure": d["structure"]} for d in docs]
    return ReferenceSet(entries, docs[0]["energy_source"], f"{source.label} phases relaxed with the campaign's VASP settings")


def reference_source(campaign) -> ReferenceSource:
    """The campaign's ``references`` section, with its file resolved to an absolute path."""
    spec = campaign.references
    file = str(campaign.resolve_path(spec.file).resolve()) if spec.file else None
    elements = sorted({el.symbol for f in campaign.compositions for el in Composition(f).elements})
    return ReferenceSource(kind=spec.source, file=file, elements=tuple(elements))
