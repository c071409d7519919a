"""``crystalgen-rlaunch`` with VASP replaced by atomate2's fake-VASP utilities (benchmarks only).

Each VASP job gets a reference folder made on the spot from its own input structure (synthetic
vasprun.xml/OUTCAR/CONTCAR, ``tests/test_data/vasp/build_references.py``): "VASP" returns the input
structure with a made-up energy (-9 eV/atom for elements, -9.1 otherwise), so everything around it
(atomate2's input writing and output parsing, custodian-free run, the record job, the hull) is real.

    python benchmarks/fake_vasp_worker.py FOLDER_ROOT -l my_launchpad.yaml -w my_fworker.yaml rapidfire ...
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


class _FoldersOnDemand(dict):
    """atomate2's job-name -> reference-folder map, filled for the running job when first asked."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, name: str) -> str:
        from jobflow import CURRENT_JOB
        from pymatgen.core import Structure
        from test_data.vasp.build_references import write_fake_vasp_folder

        structure = CURRENT_JOB.job.function_args[0]
        structure = structure if isinstance(structure, Structure) else Structure.from_dict(structure)
        folder = f"job-{len(self)}-{CURRENT_JOB.job.uuid}"
        write_fake_vasp_folder(self.root / folder, structure, -9.0 if structure.composition.is_element else -9.1)
        self[name] = folder
        return folder


class _CheckIncar(dict):
    """fake_run_vasp's options for every job: compare the INCAR atomate2 wrote with the paper's settings."""

    def get(self, _name, _default=None):
        return {"check_inputs": ["incar"], "incar_settings": ["ENCUT", "EDIFF", "EDIFFG", "GGA"]}


def main() -> None:
    import atomate2.utils.testing.vasp as fake
    from _pytest.monkeypatch import MonkeyPatch

    from crystalgen.db.fireworks_ids import rlaunch_main

    root = Path(sys.argv.pop(1)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    patcher = fake.monkeypatch_vasp(MonkeyPatch(), root)
    next(patcher)
    fake._REF_PATHS = _FoldersOnDemand(root)  # read by atomate2's fake run_vasp through the module globals
    fake._FAKE_RUN_VASP_KWARGS = _CheckIncar()
    rlaunch_main()


if __name__ == "__main__":
    main()
