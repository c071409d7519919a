"""What ``campaign validate`` checks beyond the schema: everything ``run`` would otherwise find out later.

Each check raises :class:`~flows.campaign.CampaignError` naming the field and the value: the model can
represent every composition, the checkpoint loads (and the method override is one it supports), every
composition fits every requested space group (Wyckoff multiplicities), the potentials resolve
offline, the substitution generator's CIF folders hold structures, the INCAR keys are ones VASP knows, and the reference file covers the campaign's elements.
Nothing here runs a model or touches the database.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from pydantic import ValidationError
from pymatgen.core import Composition

from crystalgen.wyckoff import fits_spacegroup
from flows.campaign import Campaign, CampaignError

def incompatible_pairs(campaign: Campaign) -> list[tuple[str, int]]:
    """(composition, space group) pairs of the grid whose Wyckoff positions cannot hold the composition."""
    return [(f, g) for f in campaign.compositions for g in campaign.spacegroups if not fits_spacegroup(f, g)]


def check_spacegroups(campaign: Campaign) -> None:
    pairs = incompatible_pairs(campaign)
    if pairs and campaign.incompatible_spacegroups == "error":
        shown = ", ".join(f"{f} in {g}" for f, g in pairs[:8]) + (f" and {len(pairs) - 8} more" if len(pairs) > 8 else "")
        raise CampaignError(
            f"spacegroups: the Wyckoff positions of a requested group cannot hold the composition ({shown}); "
            "remove those groups, or set incompatible_spacegroups: skip (leave these pairs out of the grid) or record "
            "(keep them; their candidates are recorded as failed at generation)")
    if len(pairs) == len(campaign.compositions) * len(campaign.spacegroups):
        raise CampaignError("spacegroups: no requested space group can hold any composition; nothing to generate")


def check_model_inputs(campaign: Campaign) -> None:
    """Every composition must be something the generative model can represent (site count, elements)."""
    from crystalgen.sample import Condition

    for i, formula in enumerate(campaign.compositions):
        try:
            Condition(formula=formula, spacegroup=campaign.spacegroups[0], formation_energy=0.0)
        except ValidationError as exc:
            reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise CampaignError(f"compositions.{i}: {reason}") from None


def check_checkpoint(campaign: Campaign) -> None:
    """The checkpoint must load, with the campaign's method override if it names one."""
    from crystalgen.checkpoint import load_method

    path = campaign.checkpoint_path()
    try:
        load_method(path, method=campaign.model.method)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        field = "model.method" if campaign.model.method and "method" in str(exc).lower() else "model.checkpoint"
        raise CampaignError(f"{field}: {path} cannot be used: {exc.__class__.__name__}: {str(exc)[:300]}") from None


def potential_problem(spec: str) -> str | None:
    """Why ``spec`` cannot resolve offline (None: it can; loading it is ``run``'s pre-flight)."""
    from crystalgen.potentials.registry import CHGNET_VERSIONS, SPEC_GRAMMAR, SEVENN_SHIPPED, known_potentials, parse_spec

    family, argument = parse_spec(spec)
    if family == "matgl":
        if argument.lower() in {n.lower() for n in known_potentials()} or Path(argument).expanduser().is_dir():
            return None
        return f"unknown potential {argument!r}: give a model folder, one of {', '.join(known_potentials())}, " \
               f"or a family spec: {SPEC_GRAMMAR}"
    if family == "chgnet":
        return None if (argument or CHGNET_VERSIONS[0]) in CHGNET_VERSIONS else f"unknown CHGNet version {argument!r}"
    if family in {"mace", "orb", "mattersim"}:
        from crystalgen.potentials.external import weights_file
        from crystalgen.potentials.offline import DownloadRequired

        try:
            weights_file(family, argument)
        except DownloadRequired as error:
            return str(error)
    if family == "sevenn":
        model = argument.partition(":")[0]  # the part after ':' is the modal
        checkpoint = Path(model).expanduser()
        if model not in {m.partition(":")[0] for m in SEVENN_SHIPPED} and not checkpoint.is_file():
            from crystalgen.potentials.offline import DownloadRequired

            return str(DownloadRequired(str(checkpoint), "sevenn checkpoint"))
    return None


def check_potentials(campaign: Campaign) -> None:
    """Each potential spec must resolve offline: a known name, a model folder or an existing weights file."""
    from crystalgen.potentials import resolve_potential

    for field, spec in (("prerelax.potential", campaign.prerelax.potential),
                        ("relax.potential", campaign.relax.potential)):
        if field == "relax.potential" and (campaign.relax.engine != "mlip" or spec is None):
            continue
        if problem := potential_problem(resolve_potential(spec)):
            raise CampaignError(f"{field}: {problem}")


def check_incar(campaign: Campaign) -> None:
    """INCAR keys and values that VASP would not understand (pymatgen's table of INCAR tags)."""
    if campaign.relax.engine != "vasp":
        return
    from pymatgen.io.vasp import Incar

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Incar(campaign.relax.incar_settings).check_params()
    if problems := [str(w.message) for w in caught]:
        raise CampaignError(f"relax.incar: {'; '.join(problems)}")


def check_references(campaign: Campaign) -> None:
    from flows.references import ReferenceError, file_elements, reference_source

    try:
        source = reference_source(campaign)
        if source.kind == "file" and (missing := sorted(set(source.elements) - file_elements(source.path))):
            raise CampaignError(f"references.file: {source.path.name} has no phases with {', '.join(missing)}")
    except ReferenceError as exc:
        raise CampaignError(str(exc)) from None


def check_substitution(campaign: Campaign) -> None:
    """The ``substitution`` generator's CIF folders must exist and hold readable CIF files."""
    if "substitution" not in campaign.generator:
        return
    from crystalgen.known import KnownStructuresError, cif_structures

    for i, source in enumerate(campaign.substitution_sources):
        if source not in {"references", "prototypes"}:
            try:
                cif_structures(source)
            except KnownStructuresError as exc:
                raise CampaignError(f"substitution.sources.{i}: {exc}") from None


def preflight(campaign: Campaign, checkpoint: bool = True) -> None:
    """Every check above (``checkpoint=False``: no model is sampled, e.g. given structures); the first
    problem found is raised."""
    for check in (check_model_inputs, check_spacegroups, check_potentials, check_incar, check_references,
                  check_substitution):
        check(campaign)
    if checkpoint and "model" in campaign.generator:
        check_checkpoint(campaign)
