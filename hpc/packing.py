"""What each run of a packed job must take, and whether the configured VASP command does.

A packed job (``hpc init --runs-per-job K``) runs K fireworks side by side in one allocation, and
FireWorks gives none of them its own part of it: every run sees all nodes. On Slurm a run takes
its share as a job step (``srun --exclusive``/``--exact`` with a size: the step gets its own
nodes/CPUs and waits while none are free); PBS has no steps, so the MPI launcher must be given
the run's hosts. The check reads the command's flags only: a wrapper script that does the right
thing is warned about too, and the warning says so.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from crystalgen.settings import Settings
from hpc.templates import ClusterOptions

SRUN_SHARE = ("--exclusive", "--exact")  # srun flags that give a step its own CPUs inside the allocation
SRUN_SIZE = ("-N", "--nodes", "-n", "--ntasks")
MPI_HOSTS = ("-host", "--host", "-hosts", "-hostfile", "--hostfile", "-machinefile", "--machinefile", "-f")


def _takes_its_share(scheduler: str, argv: list[str]) -> bool:
    flags = {arg.split("=", 1)[0] for arg in argv}
    flags |= {arg[:2] for arg in argv if arg[:2] in ("-N", "-n") and len(arg) > 2}  # -N2, -n64
    if scheduler == "slurm":
        return bool(argv) and Path(argv[0]).name == "srun" and bool(flags & set(SRUN_SHARE)) and bool(
            flags & set(SRUN_SIZE))
    return bool(flags & set(MPI_HOSTS))


def packing_advice(options: ClusterOptions, settings: Settings) -> tuple[str, str | None]:
    """(how a packed job's VASP runs must be launched, a warning when the configured command would not)."""
    per_run = (f"{options.nodes} node(s)" if options.runs_per_node == 1
               else f"{options.cpus} CPU(s) of a node shared by {options.runs_per_node} runs")
    if options.scheduler == "slurm":
        example = (f"srun --exclusive --nodes {options.nodes} --ntasks <ranks> vasp_std" if options.runs_per_node == 1
                   else f"srun --exclusive --nodes 1 --ntasks {options.cpus} --cpus-per-task 1 vasp_std")
    else:
        example = "mpiexec -hostfile <this run's hosts> -n <ranks> vasp_std"
    advice = (f"each job runs {options.runs_per_job} fireworks side by side on {options.allocation_nodes} node(s); "
              f"each VASP run must take only its share ({per_run}), e.g. vasp_cmd: {example}")
    commands = {"vasp_cmd": settings.vasp_cmd, **{f"--env {key}": options.env.get(key)
                                                  for key in ("ATOMATE2_VASP_CMD", "CRYSTALGEN_VASP_CMD")}}
    for source, command in commands.items():
        if not command:
            continue
        try:
            argv = shlex.split(command)
        except ValueError:
            argv = command.split()
        if not _takes_its_share(options.scheduler, argv):
            how = ("srun with --exclusive (or --exact) and --nodes/--ntasks" if options.scheduler == "slurm"
                   else "an MPI launcher given this run's hosts (-host/-hostfile)")
            return advice, (f"{source} {command!r} would take the whole allocation in each of the "
                            f"{options.runs_per_job} runs (it is not {how}); the runs would share nodes and CPUs "
                            "(ignore this if it is a wrapper script that does so)")
    return advice, None
