"""The generate stage's DDP branch: torchrun-sharded sampling gives exactly the in-process samples."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure


def test_torchrun_sharded_sampling_matches_in_process(tmp_path, monkeypatch):
    from crystalgen.sample import default_checkpoint, sample_structures
    from flows.makers.generate import sample_with_torchrun

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    conditions = [{"formula": "Ta1W1B6", "spacegroup": 191, "formation_energy": -0.5},
                  {"formula": "TaW", "spacegroup": 221, "formation_energy": -0.1}]
    kwargs = {"method": None, "steps": 5, "samples_per_condition": 3, "seed": 3}
    sharded = sample_with_torchrun(str(default_checkpoint()), conditions, kwargs, processes=2)  # gloo on CPU
    local = sample_structures(default_checkpoint(), conditions, **kwargs)
    assert [(s.condition.formula, s.sample_index) for s in sharded] == [(s.condition.formula, s.sample_index) for s in local]
    for a, b in zip(sharded, local, strict=True):
        assert (a.structure is None) == (b.structure is None) and a.reason == b.reason
        if a.structure is not None:
            sa, sb = Structure.from_dict(a.structure), Structure.from_dict(b.structure)
            assert np.allclose(sa.lattice.matrix, sb.lattice.matrix, atol=1e-5)
            assert np.allclose(sa.frac_coords, sb.frac_coords, atol=1e-5)
    assert list(tmp_path.glob("samples.jsonl.rank*.part")) == [], "per-rank part files are merged"
