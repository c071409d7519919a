"""An ASE calculator over any :class:`Potential`, for one-structure-at-a-time ASE workflows.

It lets ASE optimisers and MD use exactly the same model code as :func:`crystalgen.relax.relax_structures`
(used as the baseline in the relaxer's tests and benchmark).
"""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress
from pymatgen.io.ase import AseAtomsAdaptor

from crystalgen.potentials.base import Potential


class PotentialCalculator(Calculator):
    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, potential: Potential, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        result = self.potential.predict([AseAtomsAdaptor.get_structure(self.atoms)])[0]
        self.results = {
            "energy": result.energy,
            "free_energy": result.energy,
            "forces": result.forces,
            "stress": full_3x3_to_voigt_6_stress(result.stress),
        }
