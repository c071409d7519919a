"""The sections of a campaign file that configure one stage or one tool: model, substitution,
pre-relaxation, relaxation and references (``flows.campaign.Campaign`` puts them together)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: INCAR defaults of the paper's VASP relaxations (PBE, 500 eV cut-off, tight convergence).
DEFAULT_INCAR: dict[str, Any] = {"ENCUT": 500, "EDIFF": 1e-5, "EDIFFG": -0.01, "GGA": "PE"}
#: the largest integer MongoDB stores (BSON int64): seeds are written into every candidate document
INT64_MAX = 2**63 - 1
#: bounds that keep every number a campaign writes meaningful (and every grid finite to plan)
MAX_COUNT = 1_000_000
MAX_CANDIDATES = 100_000_000


class Strict(BaseModel):
    """Unknown keys, non-finite numbers and changes after validation are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(Strict):
    """Which generative model samples the candidates."""

    checkpoint: str = Field("default", description="checkpoint file, or 'default' for the shipped one")
    method: str | None = Field(None, description="sampling method override (ddpm, ddim, cfm, ...)")
    steps: int | None = Field(None, ge=1, le=MAX_COUNT, description="number of sampling steps override")


class PrerelaxSpec(Strict):
    """MLIP pre-relaxation and the filter that decides what goes on to the expensive relaxation."""

    potential: str | None = Field(None, description="potential spec (README 'Potentials'); empty: settings, then the shipped default")
    relaxer: Literal["crystalgen", "torchsim"] = Field(
        "crystalgen", description="batched FIRE: crystalgen's, or TorchSim's (models it wraps; make install-torchsim)")
    fmax: float = Field(0.05, gt=0, le=100)
    steps: int = Field(500, ge=1, le=MAX_COUNT)
    batch_size: int = Field(64, ge=1, le=MAX_COUNT, description="structures per batched potential call")
    chunk_size: int = Field(64, ge=1, le=MAX_COUNT, description="candidates per pre-relax job (the unit that is resumed)")
    e_above_hull_window: float = Field(0.1, ge=-10, le=100,
                                       description="MLIP e_above_hull (eV/atom) at or below which a candidate is relaxed")
    dedupe: bool = Field(True, description="drop candidates that StructureMatcher finds equal to a better one")
    max_selected: int | None = Field(None, ge=1, le=MAX_CANDIDATES, description="relax at most this many (lowest MLIP e_above_hull first)")


class RelaxSpec(Strict):
    """The final relaxation: atomate2 VASP, or the MLIP stand-in where no VASP exists."""

    engine: Literal["vasp", "mlip"] = "vasp"
    incar: dict[str, Any] = Field(default_factory=dict, description="INCAR overrides on top of the paper's defaults")
    potential: str | None = Field(None, description="engine mlip: potential; empty: the pre-relaxation's")
    fmax: float = Field(0.02, gt=0, le=100, description="engine mlip: force criterion")
    steps: int = Field(1000, ge=1, le=MAX_COUNT, description="engine mlip: step limit")
    batch_size: int | None = Field(None, ge=1, le=MAX_COUNT, description="engine mlip: structures per call; empty: the pre-relaxation's")

    @field_validator("incar")
    @classmethod
    def _upper_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        return {str(key).upper(): val for key, val in value.items()}

    @property
    def incar_settings(self) -> dict[str, Any]:
        return {**DEFAULT_INCAR, **self.incar}


class ReferenceSpec(Strict):
    """Where the competing phases of the convex hull come from."""

    source: Literal["file", "mp-api"] = "file"
    file: str | None = Field(None, description="reference file; empty: the shipped Ta-W-B phases")
    recompute: bool = Field(
        True,
        description="relax the reference structures with the campaign's relax engine (VASP: same INCAR), so "
        "references and candidates share one energy source; false: use the energies stored with the references",
    )
    compatibility: str | None = Field(
        None,
        description="name of the compatibility scheme under which you accept energies computed with other "
        "settings than the candidates' (recorded on every result, no corrections applied); empty: refuse to mix",
    )


class SubstitutionSpec(Strict):
    """Where the ``substitution`` generator takes its parent structures from."""

    sources: list[str] = Field(["references", "prototypes"], min_length=1, description="'references' (the campaign's "
                               "reference phases), 'prototypes' (the shipped prototype dataset) or a folder of CIF files")
    match_spacegroup: bool = Field(True, description="keep only substituted crystals in the condition's space group")
