"""Any ASE calculator as a :class:`Potential`: the way in for models without a batched API of ours.

The calculator sees one structure per call, so a step of the batched relaxer costs one calculator
call per structure in flight (clearly slower than a batched model on a GPU); the relaxer's
bookkeeping (queue, validity checks, failures isolated) is the same.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import numpy as np
from pymatgen.core import Element, Structure

from crystalgen.potentials.base import Potential, PotentialResult

ALL_ELEMENTS = frozenset(Element.from_Z(z).symbol for z in range(1, 104))


class AseCalculatorPotential(Potential):
    """An ASE calculator behind the one interface; ``torchsim_factory`` builds its TorchSim model, if any."""

    def __init__(self, calculator, name: str, version: str, elements: frozenset[str] = ALL_ELEMENTS,
                 device: str = "cpu", model=None, torchsim_factory: Callable[[], object] | None = None):
        self.calculator = calculator
        self.name = name
        self.version = version
        self.elements = elements
        self.device = device
        self.model = model  # the torch module, when there is one: the guard fingerprints its weights
        self._torchsim_factory = torchsim_factory

    def predict(self, structures: Sequence[Structure]) -> list[PotentialResult]:
        from pymatgen.io.ase import AseAtomsAdaptor

        self.require_supported(structures)
        results = []
        for structure in structures:
            atoms = AseAtomsAdaptor.get_atoms(structure)
            atoms.calc = self.calculator
            energy = float(atoms.get_potential_energy())
            forces = np.asarray(atoms.get_forces(), dtype=float)
            stress = np.asarray(atoms.get_stress(voigt=False), dtype=float)  # eV/Å^3, ASE sign
            results.append(PotentialResult(energy, forces, stress, len(structure)))
        return results

    def torchsim_model(self):
        return None if self._torchsim_factory is None else self._torchsim_factory()


def calculator_from_factory(argument: str):
    """``<module>:<factory>`` -> the ASE calculator ``factory()`` returns (factory may be dotted)."""
    from ase.calculators.calculator import BaseCalculator

    module_name, sep, factory_name = argument.partition(":")
    if not sep or not module_name or not factory_name:
        raise ValueError(f"potential 'ase:{argument}': expected ase:<module>:<factory>, e.g. ase:ase.calculators.emt:EMT")
    try:
        factory = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"potential 'ase:{argument}': cannot import module {module_name!r}: {exc}") from exc
    for part in factory_name.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ValueError(f"potential 'ase:{argument}': module {module_name!r} has no {factory_name!r}")
    calculator = factory()
    if not isinstance(calculator, BaseCalculator):
        raise ValueError(f"potential 'ase:{argument}': {factory_name}() returned {type(calculator).__name__}, "
                         "not an ASE calculator")
    return calculator


def ase_factory_potential(argument: str) -> AseCalculatorPotential:
    """The generic ``ase:<module>:<factory>`` potential."""
    import ase

    calculator = calculator_from_factory(argument)
    elements = frozenset(getattr(calculator, "crystalgen_elements", ALL_ELEMENTS))
    name = f"ase:{argument}"
    return AseCalculatorPotential(calculator, name, f"{name} ({type(calculator).__name__}, ase {ase.__version__})",
                                  elements=elements, model=getattr(calculator, "model", None))
