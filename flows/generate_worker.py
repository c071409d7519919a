"""``torchrun --nproc_per_node=N -m flows.generate_worker SPEC.json``: sampling sharded over N processes.

The generate job launches this when its stage asks for more than one GPU and the node has them.
``crystalgen.sample.sample_structures`` does the sharding itself once ``torch.distributed`` is
initialised (rank r takes every N-th sample; each rank appends to its own part file, merged at the
end), so this module only sets up the process group. SPEC is the JSON written by the job:
``{"checkpoint", "conditions", "method", "steps", "samples_per_condition", "seed", "out"}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    import torch
    import torch.distributed as dist

    from crystalgen.sample import sample_structures

    (spec_path,) = argv if argv is not None else sys.argv[1:]
    spec = json.loads(Path(spec_path).read_text())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        sample_structures(
            spec["checkpoint"], spec["conditions"], method=spec.get("method"), steps=spec.get("steps"),
            samples_per_condition=spec["samples_per_condition"], seed=spec["seed"], out=spec["out"],
        )
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
