"""One jobflow Maker per pipeline stage, composed by :class:`CampaignMaker`.

references -> generate -> prerelax (chunks) -> select -> relax (VASP or MLIP stand-in) -> hull.
"""

from flows.makers.campaign import CampaignMaker, StageMakers, mlip_settings, stage_makers
from flows.makers.generate import GenerateMaker
from flows.makers.hull import HullMaker
from flows.makers.prerelax import PrerelaxMaker
from flows.makers.references import ReferencesMaker
from flows.makers.relax import MlipRelaxMaker, VaspRelaxMaker
from flows.makers.select import SelectMaker

__all__ = ["CampaignMaker", "GenerateMaker", "HullMaker", "MlipRelaxMaker", "PrerelaxMaker", "ReferencesMaker",
           "SelectMaker", "StageMakers", "VaspRelaxMaker", "mlip_settings", "stage_makers"]
