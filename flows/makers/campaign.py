"""``CampaignMaker``: a validated campaign -> the jobflow Flow of its stages.

Only references, generate and the pre-relax fan-out exist up front; pre-relax chunks, selection,
the relaxations and the hull are created at run time by the job before them, once their number is
known, from the stage Makers built here (each holds only its own settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobflow import Flow, Maker

from flows.campaign import Campaign
from flows.energies import MlipSettings
from flows.makers.generate import GenerateMaker
from flows.makers.hull import HullMaker
from flows.makers.prerelax import PrerelaxChunkMaker, PrerelaxMaker
from flows.makers.references import ReferencesMaker
from flows.makers.relax import MlipRelaxMaker, VaspRelaxMaker, atomate2_relax_maker
from flows.makers.select import SelectMaker
from flows.references import reference_source
from flows.stages import Stage


@dataclass(frozen=True)
class StageMakers:
    """The Maker of every stage of one campaign."""

    references: ReferencesMaker
    generate: GenerateMaker
    prerelax: PrerelaxMaker
    select: SelectMaker
    relax: MlipRelaxMaker | VaspRelaxMaker
    hull: HullMaker


def mlip_settings(campaign: Campaign) -> tuple[MlipSettings, MlipSettings]:
    """(pre-relaxation, MLIP stand-in relax) settings, potentials resolved (spec, else setting, else default)."""
    from crystalgen.potentials import resolve_potential

    pre, relax = campaign.prerelax, campaign.relax
    prerelax = MlipSettings(potential=resolve_potential(pre.potential), fmax=pre.fmax, steps=pre.steps,
                            batch_size=pre.batch_size, relaxer=pre.relaxer)
    final = MlipSettings(potential=resolve_potential(relax.potential or pre.potential), fmax=relax.fmax,
                         steps=relax.steps, batch_size=relax.batch_size or pre.batch_size)
    return prerelax, final


def stage_makers(campaign: Campaign, manager_configs: dict[str, dict] | None = None,
                 structures: dict[str, list[dict]] | None = None) -> StageMakers:
    """Every stage's Maker; ``manager_configs`` (stage -> config) says where each stage's jobs run."""
    from crystalgen.settings import get_settings

    def common(stage: Stage) -> dict[str, Any]:
        return {"campaign": campaign.name, "manager_config": dict((manager_configs or {}).get(stage.value, {}))}

    source = reference_source(campaign)
    sampled = "model" in campaign.generator and structures is None
    checkpoint = str(campaign.checkpoint_path()) if sampled else None
    prerelax_mlip, relax_mlip = mlip_settings(campaign)
    mlip = campaign.relax.engine == "mlip"
    incar = campaign.relax.incar_settings
    hull = HullMaker(engine=campaign.relax.engine, references=source, mlip=relax_mlip if mlip else None,
                     incar=None if mlip else incar, recompute=campaign.references.recompute,
                     compatibility=campaign.references.compatibility, novelty_checkpoint=checkpoint,
                     stability_window=campaign.stability_window,
                     **common(Stage.HULL))
    if mlip:
        relax = MlipRelaxMaker(mlip=relax_mlip, **common(Stage.RELAX))
    else:
        relax = VaspRelaxMaker(vasp=atomate2_relax_maker(incar, get_settings().vasp_cmd),
                               references=source if campaign.references.recompute else None, **common(Stage.RELAX))
    spec = campaign.prerelax
    select = SelectMaker(e_above_hull_window=spec.e_above_hull_window, dedupe=spec.dedupe, max_selected=spec.max_selected,
                         relax=relax, hull=hull, **common(Stage.SELECT))
    chunk = PrerelaxChunkMaker(mlip=prerelax_mlip, references=source, **common(Stage.PRERELAX))
    prerelax = PrerelaxMaker(chunk_size=spec.chunk_size, chunk=chunk, select=select, **common(Stage.PRERELAX))
    generate = GenerateMaker(grid=campaign.grid, samples_per_condition=campaign.samples_per_condition, seed=campaign.seed,
                             generators=list(campaign.generator), checkpoint=checkpoint, method=campaign.model.method,
                             steps=campaign.model.steps, gpus=campaign.resources.generate.gpus, structures=structures,
                             sources=campaign.substitution_sources, match_spacegroup=campaign.substitution.match_spacegroup,
                             references=source, rescue=campaign.rescue, unfit=campaign.unfit_pairs,
                             **common(Stage.GENERATE))
    references = ReferencesMaker(references=source, mlip=prerelax_mlip, compositions=list(campaign.compositions),
                                 **common(Stage.REFERENCES))
    return StageMakers(references, generate, prerelax, select, relax, hull)


@dataclass
class CampaignMaker(Maker):
    """Build the whole campaign flow.

    ``structures`` (reduced formula -> pymatgen structure dicts) replaces the generative model, e.g.
    to seed a campaign with known prototypes; empty: sample with the campaign's checkpoint.
    ``manager_configs`` (stage name -> manager config, see ``hpc.routing``) places each stage's jobs.
    """

    name: str = "campaign"
    structures: dict[str, list[dict]] | None = field(default=None)
    manager_configs: dict[str, dict] = field(default_factory=dict)

    def make(self, campaign: Campaign) -> Flow:
        makers = stage_makers(campaign, self.manager_configs, self.structures)
        references = makers.references.make()
        generate = makers.generate.make(references.output["hull_formation_energy"])
        prerelax = makers.prerelax.make(generate.output)
        return Flow([references, generate, prerelax], name=f"{self.name} {campaign.name}")
