"""Machine-learned interatomic potentials behind one small batched interface.

``resolve_potential`` says which potential a run uses (argument, setting, shipped default);
``load_potential`` turns a spec into a :class:`Potential`; ``check_potential`` refuses one whose
energies are wrong; ``checked_potential`` does all three once per process; ``Potential.predict``
evaluates many structures in one batched pass.
"""

from crystalgen.potentials.base import EV_PER_A3_TO_GPA, Potential, PotentialResult
from crystalgen.potentials.guard import PotentialSanityError, check_potential, reference_structures
from crystalgen.potentials.registry import (
    DEFAULT_POTENTIAL,
    checked_potential,
    known_potentials,
    load_potential,
    resolve_potential,
)

__all__ = [
    "DEFAULT_POTENTIAL",
    "EV_PER_A3_TO_GPA",
    "Potential",
    "PotentialResult",
    "PotentialSanityError",
    "check_potential",
    "checked_potential",
    "known_potentials",
    "load_potential",
    "reference_structures",
    "resolve_potential",
]
