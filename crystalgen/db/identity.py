"""Which process a pid is: start time and command line from /proc (Linux).

A pid alone is not an identity: after the server dies the kernel hands its pid to the next
process, and ``db stop`` would kill that one. The start time (field 22 of ``/proc/<pid>/stat``,
clock ticks since boot) and the command line together tell the process we started from any
later holder of the same pid. Without /proc (not Linux) no pid can be verified: a recorded server
then counts as gone and is never signalled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_time: int
    cmdline: tuple[str, ...]

    def describe(self) -> str:
        return " ".join(self.cmdline) or "(no command line)"


def identity_of(pid: int) -> ProcessIdentity | None:
    """The live process holding ``pid``, or None when there is none (zombies count as gone)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        raw_cmdline = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):  # exited, waiting to be reaped
        return None
    cmdline = tuple(raw_cmdline.decode(errors="replace").split("\0"))
    if cmdline and cmdline[-1] == "":
        cmdline = cmdline[:-1]
    return ProcessIdentity(pid=pid, start_time=int(fields[19]), cmdline=cmdline)

