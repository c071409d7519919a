"""Machine-learned interatomic potentials behind one small batched interface.

``load_potential`` resolves a spec to a :class:`Potential`; ``check_potential`` refuses one whose
energies are wrong; ``Potential.predict`` evaluates many structures in one batched pass.
"""

from crystalgen.potentials.base import EV_PER_A3_TO_GPA, Potential, PotentialResult
from crystalgen.potentials.guard import PotentialSanityError, check_potential, reference_structures
from crystalgen.potentials.registry import DEFAULT_POTENTIAL, known_potentials, load_potential

__all__ = [
    "DEFAULT_POTENTIAL",
    "EV_PER_A3_TO_GPA",
    "Potential",
    "PotentialResult",
    "PotentialSanityError",
    "check_potential",
    "known_potentials",
    "load_potential",
    "reference_structures",
]
