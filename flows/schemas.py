"""The documents crystalgen stores, as pydantic models: one schema per document, checked on every write.

``CandidateDoc`` (collection ``candidates``) follows one generated structure through the pipeline,
with one sub-record per stage. ``CampaignDoc`` (collection ``campaigns``) records what a campaign was
run with: the validated campaign, the potentials it resolved to, and the references its hull used.

Documents written before ``schema_version`` existed (crystalgen <= 0.1, "version 1") have the same
fields and still read; a document from a newer crystalgen is refused with a message saying so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 2


class NewerSchemaError(ValueError):
    """A document written by a newer crystalgen than this one."""


class CandidateState(str, Enum):
    """How far a candidate got (the ``stage`` field); ``hull`` = ranked on the convex hull."""

    GENERATED = "generated"
    PRERELAXED = "prerelaxed"
    SELECTED = "selected"
    RELAXED = "relaxed"
    RANKED = "hull"
    FAILED = "failed"
    REJECTED = "rejected"


#: states a candidate never leaves by itself (a resubmission moves it back explicitly)
TERMINAL_STATES = (CandidateState.RANKED, CandidateState.FAILED, CandidateState.REJECTED)


def now() -> datetime:
    return datetime.now(UTC)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)


class ConditionRecord(_Record):
    """The generation condition: cell formula as written in the campaign, space group, target energy."""

    formula: str = Field(description="cell formula as written in the campaign (e.g. Ta1W2B5)")
    spacegroup: int = Field(ge=1, le=230, description="requested space group")
    formation_energy: float = Field(description="target formation energy, eV/atom")
    scheme: str | None = Field(None, description="energy scheme(s) of the grid point, joined by +")


class ModelRecord(_Record):
    """What produced the structure: a checkpoint (or ``explicit-structures``) with its sampling settings,
    or for a baseline generator what it built the structure from."""

    checkpoint: str = Field(description="checkpoint file, explicit-structures, or '' (baseline generators)")
    method: str | None = Field(None, description="sampling method (ddpm, ddim, cfm-n, ...) or the generator")
    steps: int | None = Field(None, description="sampling steps")
    origin: str | None = Field(None, description="baseline generators: the parent structure or tool and how it was used")
    symmetry: str | None = Field(None, description="model samples: how the requested space group was imposed (none, project, wyckoff)")
    symmetry_rebuilt: str | None = Field(None, description="why the raw sample was rejected, when imposing the group rebuilt its atoms")


class PrerelaxRecord(_Record):
    energy_per_atom: float = Field(description="MLIP energy, eV/atom")
    e_above_hull: float = Field(description="eV/atom on the hull of the references relaxed with the same potential and settings")
    potential: str = Field(description="potential name and version")
    converged: bool = Field(description="forces and stress below fmax within the step limit")
    steps: int = Field(description="FIRE steps taken")


class RelaxRecord(_Record):
    """The final relaxation; ``engine: mlip`` is the stand-in where no VASP exists (``is_dft: false``)."""

    engine: Literal["mlip", "vasp"] | None = Field(None, description="vasp (atomate2) or mlip (stand-in)")
    is_dft: bool | None = Field(None, description="true only for VASP energies")
    energy_per_atom: float | None = Field(None, description="final energy, eV/atom")
    energy_source: dict[str, Any] | None = Field(None, description="settings the energy depends on (engine, GGA, ENCUT, ...)")
    potential: str | None = Field(None, description="mlip: potential name and version")
    converged: bool | None = Field(None, description="mlip: converged within the step limit")
    steps: int | None = Field(None, description="mlip: FIRE steps taken")
    job_uuid: str | None = Field(None, description="vasp: uuid of the atomate2 job (its TaskDoc in the job store)")
    incar: dict[str, Any] | None = Field(None, description="vasp: INCAR keys VASP read (ENCUT, EDIFF, EDIFFG, GGA, ...)")


class HullRecord(_Record):
    decomposition: dict[str, float] = Field(description="reference phase -> fraction it decomposes into")
    below_hull: bool = Field(description="e_above_hull < 0: below the references' hull")
    chemsys: str = Field(description="chemical system of the hull, e.g. B-Ta-W")
    reference_source: str | None = Field(None, description="which references, relaxed how")
    energy_source: dict[str, Any] | None = Field(None, description="the references' energy source")
    warnings: list[str] = Field(default_factory=list, description="energy sources mixed under a compatibility scheme")
    duplicate_of: str | None = Field(None, description="id of the better candidate that relaxed into the same crystal")


class HistoryEvent(BaseModel):
    """One entry of a candidate's history: the state it moved to, when, and why (free-form extras)."""

    model_config = ConfigDict(extra="allow", use_enum_values=True)

    stage: CandidateState = Field(description="state entered")
    at: datetime = Field(default_factory=now, description="when (UTC)")


class CandidateDoc(_Record):
    """One candidate structure and its whole life; ``stage`` says how far it got."""

    schema_version: int = Field(SCHEMA_VERSION, description="document layout version (absent: 1)")
    candidate_id: str = Field(description="hash of campaign, condition, sample index and seed: reruns find it again")
    campaign: str = Field(description="campaign name")
    condition: ConditionRecord = Field(description="what was asked for")
    sample_index: int = Field(ge=0, description="k-th sample of the condition")
    grid_index: int | None = Field(None, ge=0, description="position in the campaign's grid: the order stages work in")
    seed: int = Field(description="campaign seed")
    generator: str = Field("model", description="which generator made it: model, random-symmetric or substitution")
    model: ModelRecord = Field(description="what generated it")
    formula: str = Field(description="reduced formula")
    chemsys: str = Field(description="chemical system, e.g. B-Ta-W")
    stage: CandidateState = Field(CandidateState.GENERATED, description="how far it got: generated, prerelaxed, "
                                  "selected, relaxed, hull (ranked), failed or rejected")
    structure: dict[str, Any] | None = Field(description="latest structure (pymatgen dict); null if generation failed")
    rescue: str | None = Field(None, description="what the near-miss repair did before pre-relaxation (null: nothing)")
    prerelax: PrerelaxRecord | None = Field(None, description="MLIP pre-relaxation")
    relax: RelaxRecord | None = Field(None, description="final relaxation")
    hull: HullRecord | None = Field(None, description="convex-hull ranking")
    e_above_hull: float | None = Field(None, description="eV/atom, from the hull stage (indexed, sortable)")
    novel: bool | None = Field(None, description="hull stage: matches no reference phase and no training structure")
    matches: str | None = Field(None, description="the known structure it equals, e.g. reference:TaB2 or training:<id>")
    error: str | None = Field(None, description="why it failed (stage: reason)")
    rejected_reason: str | None = Field(None, description="why selection left it out")
    history: list[HistoryEvent] = Field(default_factory=list, description="every state change, with extras "
                                        "(error, reason, duplicate_of, resubmission)")
    updated_at: datetime = Field(default_factory=now, description="last change (UTC)")

    @classmethod
    def from_mongo(cls, doc: dict[str, Any]) -> CandidateDoc:
        """Read a stored document (any version this crystalgen knows)."""
        return cls.model_validate(_readable(doc, "candidate"))


class PotentialRecord(_Record):
    """A potential as a campaign resolved it: the spec jobs load, and what it was when recorded."""

    spec: str
    name: str | None = None
    version: str | None = None


class CampaignDoc(_Record):
    """What a campaign was run (or submitted) with; one per campaign name."""

    schema_version: int = SCHEMA_VERSION
    name: str
    campaign: dict[str, Any] = Field(description="the validated campaign file")
    fingerprint: str
    prerelax_potential: PotentialRecord
    relax_potential: PotentialRecord | None = Field(None, description="the MLIP stand-in's potential (engine mlip)")
    checkpoint: str | None = None
    hull_references: dict[str, Any] | None = Field(None, description="the reference set the hull stage ranked against")
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)

    @classmethod
    def from_mongo(cls, doc: dict[str, Any]) -> CampaignDoc:
        """Read a stored document (any version this crystalgen knows)."""
        return cls.model_validate(_readable(doc, "campaign"))


class CostDoc(_Record):
    """What one job cost (collection ``costs``): wall and CPU seconds, and how much of it was science
    (sampling, potential calls, VASP) rather than framework; summed per stage for the funnel."""

    schema_version: int = SCHEMA_VERSION
    campaign: str
    stage: str
    job: str = Field(description="job name")
    candidate_ids: list[str] = Field(default_factory=list, description="the candidates the job worked on")
    generator: str | None = Field(None, description="generate stage: the generator this cost belongs to")
    wall_s: float = Field(ge=0)
    cpu_s: float = Field(ge=0, description="CPU seconds of this process (all its threads)")
    science_s: float = Field(0.0, ge=0, description="seconds inside the model, the potential or VASP")
    device: str = Field("cpu", description="cpu, or the GPU the job used")
    at: datetime = Field(default_factory=now)


def _readable(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    """``doc`` without MongoDB's ``_id``, version 1 when unversioned; refuses newer versions."""
    version = doc.get("schema_version", 1)
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(
            f"{kind} document {doc.get('candidate_id') or doc.get('name')!r} was written by a newer crystalgen "
            f"(schema version {version}; this one reads up to {SCHEMA_VERSION}): upgrade crystalgen to read this database"
        )
    return {k: v for k, v in doc.items() if k != "_id"} | {"schema_version": version}


def _type_name(kind: Any) -> str:
    """A JSON-ish name of a field type, as a mongosh or pymongo user sees the value."""
    args = [a for a in get_args(kind) if a is not type(None)]
    if get_origin(kind) in (Union, UnionType):
        return " or ".join(_type_name(a) for a in args) + (" or null" if len(args) < len(get_args(kind)) else "")
    if get_origin(kind) is Literal:
        return " or ".join(repr(a) for a in get_args(kind))
    if get_origin(kind) is list:
        return f"array of {_type_name(args[0])}"
    if get_origin(kind) is dict or (isinstance(kind, type) and issubclass(kind, BaseModel)):
        return "object"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", datetime: "date"}
    return "string" if isinstance(kind, type) and issubclass(kind, Enum) else names.get(kind, str(kind))


def field_table(model: type[BaseModel] = CandidateDoc, prefix: str = "") -> list[str]:
    """Markdown rows ``| field | type | meaning |`` of ``model``, sub-records' fields dotted (for the README)."""
    rows = []
    for name, info in model.model_fields.items():
        rows.append(f"| `{prefix}{name}` | {_type_name(info.annotation)} | {info.description or ''} |")
        record = next((t for t in (info.annotation, *get_args(info.annotation))
                       if isinstance(t, type) and issubclass(t, _Record)), None)
        if record is not None:
            rows += field_table(record, f"{prefix}{name}.")
    return rows


if __name__ == "__main__":  # python -m flows.schemas: the README's candidate table
    print("\n".join(["| field | type | meaning |", "|---|---|---|", *field_table()]))
