#!/usr/bin/env python3
"""A one-machine Slurm cluster for trying and testing ``qlaunch``: start it, use it, stop it.

    python3 tests/slurm/cluster.py start DIR    # prints `export SLURM_CONF=DIR/slurm.conf`
    python3 tests/slurm/cluster.py status DIR   # sinfo + squeue of that cluster
    python3 tests/slurm/cluster.py stop DIR     # cancels its jobs, stops the daemons it started

Everything lives under DIR: slurm.conf and gres.conf, the munge key and socket, slurmctld state,
slurmd spool, logs (``DIR/log``: munged, slurmctld, slurmd, and ``jobcomp.txt`` with one line per
finished job, since ``sacct`` needs slurmdbd) and ``pids.json``, the three daemons started
(munged, slurmctld, slurmd, each in the foreground of its own session). ``stop`` signals exactly
those pids, after checking that each still runs a command line naming DIR; it never looks for
daemons by name. Ports are free ports picked at start, so it does not collide with a site's Slurm
(or a second test cluster); client commands find this cluster through ``SLURM_CONF``.

The node ``localhost`` declares 2 CPUs (``SlurmdParameters=config_overrides``: whatever the
hardware) and ``Gres=gpu:2``, GPUs that exist only as a count (``gres.conf``: ``AutoDetect=off``,
two placeholder device files, see ``gres_conf``), so ``--gres=gpu:N`` jobs are scheduled on a
machine without GPUs. ``SelectTypeParameters=CR_CPU`` makes single CPUs the unit of allocation: two 1-CPU jobs
run at once.

When the Slurm binaries are missing and we are root, ``start`` installs Debian's ``slurmctld
slurmd slurm-client munge`` with apt-get (about 10 s). Only the standard library is used, so any
python3 runs this file; the tests import it (``tests/slurm/fixtures.py``).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")
DAEMONS = ("munged", "slurmctld", "slurmd")  # start order; stopped in reverse
NODE = "localhost"
PARTITION = "debug"
CPUS = 2
GPUS = 2


class ClusterUnavailable(RuntimeError):
    """Slurm cannot be started here (not installed and cannot install, or a daemon failed); says why."""


# --------------------------------------------------------------------------- installation


def missing_binaries() -> list[str]:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def ensure_installed(log=print) -> None:
    """Install the Debian packages when a binary is missing; ClusterUnavailable when that is impossible."""
    missing = missing_binaries()
    if not missing:
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable(f"Slurm is not installed ({', '.join(missing)} missing) and installing "
                                 f"it needs root: apt-get install {' '.join(PACKAGES)}")
    if shutil.which("apt-get") is None:
        raise ClusterUnavailable(f"Slurm is not installed ({', '.join(missing)} missing) and there is no apt-get "
                                 f"to install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    log(f"installing {' '.join(PACKAGES)} (apt-get)")
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:  # a fresh image may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or missing_binaries():
        raise ClusterUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: {result.stderr.strip()[-500:]}")


def _binary(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin")
    if found is None:
        raise ClusterUnavailable(f"{name} not found")
    return found


# --------------------------------------------------------------------------- configuration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(root: Path, ctld_port: int, slurmd_port: int) -> str:
    user = pwd.getpwuid(os.getuid()).pw_name  # root normally; another user can try, jobs run as that user
    return f"""\
# One-machine test cluster written by tests/slurm/cluster.py; everything lives under {root}.
ClusterName=crystalgen-test
SlurmctldHost={NODE}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
GresTypes=gpu
MpiDefault=none
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/log/jobcomp.txt
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
# finished jobs stay visible to `scontrol show job` for 10 minutes
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={CPUS} Gres=gpu:{GPUS} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


def gres_conf(root: Path) -> str:
    """GPUs that exist only as a count. Slurm 22.05's gres/gpu plugin drops GPUs without ``File=``
    ("Removing file-less GPU gpu:(null) from final GRES list", also with ``Flags=CountOnly``) and
    the node then fails registration ("gres/gpu count reported lower than configured (0 < 2)").
    So each GPU gets a device file: a symlink to /dev/null (a character device, which is all
    slurmd checks; regular files are accepted too but logged as errors). Nothing binds devices
    (``TaskPlugin=task/none``, no cgroups); jobs see CUDA_VISIBLE_DEVICES=<index> and no GPU."""
    return f"""\
AutoDetect=off
NodeName={NODE} Name=gpu File={root}/dev/nvidia[0-{GPUS - 1}]
"""


# --------------------------------------------------------------------------- processes


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":  # our own exited child: reap it
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


class Cluster:
    """The test cluster rooted at ``root`` (a directory of its own; created if missing)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.conf = self.root / "slurm.conf"
        self.log_dir = self.root / "log"
        self.pids_file = self.root / "pids.json"

    # -- environment ---------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """What a client (sbatch, squeue, qlaunch) needs to talk to this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def client_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env}
        for key in ("SLURM_JOB_ID", "SLURM_JOBID"):  # a surrounding allocation is not ours
            env.pop(key, None)
        return env

    def run(self, *args: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(list(args), env=self.client_env(), capture_output=True, text=True,
                              timeout=timeout, check=check)

    # -- state ---------------------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self.pids_file.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def _ours(self, pid: int) -> bool:
        """The pid still runs one of our daemons (its command line names our directory)."""
        return _alive(pid) and str(self.root) in _cmdline(pid)

    def running(self) -> bool:
        pids = self.pids()
        return bool(pids) and all(self._ours(pid) for pid in pids.values())

    def node_state(self) -> str:
        try:
            result = self.run("sinfo", "-h", "-N", "-n", NODE, "-o", "%T", timeout=15)
        except subprocess.TimeoutExpired:
            return "timeout"
        return result.stdout.strip() if result.returncode == 0 else f"error: {result.stderr.strip()}"

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / name
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def describe_failure(self) -> str:
        return "\n".join(f"--- {name} (last lines)\n{self.log_tail(name)}"
                         for name in ("munged.log", "slurmctld.log", "slurmd.log", "slurmd.out", "slurmctld.out"))

    # -- start / stop --------------------------------------------------------------------

    def write_config(self) -> None:
        for sub in ("munge", "state", "spool", "run", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        self.conf.write_text(slurm_conf(self.root, free_port(), free_port()))
        (self.root / "dev").mkdir(exist_ok=True)
        for index in range(GPUS):
            device = self.root / "dev" / f"nvidia{index}"
            if not device.is_symlink():
                device.symlink_to("/dev/null")
        (self.root / "gres.conf").write_text(gres_conf(self.root))

    def _spawn(self, name: str, argv: list[str]) -> int:
        out = open(self.log_dir / f"{name}.out", "ab")  # noqa: SIM115 - handed to the daemon
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=self.client_env(), cwd=self.root, start_new_session=True)
        finally:
            out.close()
        pids = self.pids()
        pids[name] = proc.pid
        self.pids_file.write_text(json.dumps(pids))
        return proc.pid

    def _wait(self, what: str, ready, timeout: float, pid: int | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if pid is not None and not _alive(pid):
                raise ClusterUnavailable(f"{what}: the daemon exited\n{self.describe_failure()}")
            time.sleep(0.2)
        raise ClusterUnavailable(f"{what}: not ready after {timeout:.0f} s\n{self.describe_failure()}")

    def start(self, timeout: float = 60, log=print) -> "Cluster":
        """Install if needed, write the configuration, start the daemons, wait for an idle node."""
        if self.running():
            return self
        ensure_installed(log=log)
        if self.pids():
            self.stop()
        self.write_config()
        munge_dir = self.root / "munge"
        socket_path = munge_dir / "munge.socket"
        try:
            pid = self._spawn("munged", [
                _binary("munged"), "--foreground", "--force", f"--socket={socket_path}",
                f"--key-file={munge_dir / 'munge.key'}", f"--pid-file={munge_dir / 'munged.pid'}",
                f"--seed-file={munge_dir / 'munged.seed'}", f"--log-file={self.log_dir / 'munged.log'}"])
            self._wait("munged", socket_path.exists, 15, pid)
            pid = self._spawn("slurmctld", [_binary("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self._wait("slurmctld", lambda: self.run("scontrol", "ping", timeout=10).returncode == 0, timeout, pid)
            pid = self._spawn("slurmd", [_binary("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)])
            self._wait(f"node {NODE} idle", self._node_idle, timeout, pid)
        except BaseException:
            self.stop()
            raise
        return self

    def _node_idle(self) -> bool:
        state = self.node_state()
        if "drain" in state or "inval" in state:  # refused at registration: no point waiting
            reason = self.run("sinfo", "-h", "-R", "-o", "%E", timeout=15).stdout.strip()
            raise ClusterUnavailable(f"node {NODE} is {state}: {reason}\n{self.describe_failure()}")
        return state == "idle"

    def cancel_jobs(self, timeout: float = 30) -> None:
        """Cancel every job of this cluster and wait until the queue is empty."""
        if not self.running():
            return
        try:
            if self.run("scancel", "-u", str(os.getuid()), timeout=15).returncode != 0:
                return
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                result = self.run("squeue", "-h", "-o", "%i", timeout=15)
                if result.returncode != 0 or not result.stdout.strip():
                    return
                time.sleep(0.5)
        except subprocess.TimeoutExpired:
            return

    def stop(self, timeout: float = 20) -> list[str]:
        """Cancel the jobs, then stop exactly the daemons ``start`` recorded. Returns what was stopped."""
        self.cancel_jobs()
        pids = self.pids()
        stopped = []
        for name in reversed(DAEMONS):
            pid = pids.get(name)
            if pid is None or not self._ours(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid) and self._ours(pid):
                os.kill(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.05)
            stopped.append(f"{name} ({pid})")
        self.pids_file.unlink(missing_ok=True)
        return stopped


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("start", "stop", "status"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    command, root = argv
    cluster = Cluster(root)
    if command == "start":
        try:
            cluster.start(log=lambda msg: print(msg, file=sys.stderr))
        except ClusterUnavailable as exc:
            print(f"cannot start the test cluster: {exc}", file=sys.stderr)
            return 1
        print(f"slurm test cluster up: node {NODE} idle ({CPUS} CPUs, gpu:{GPUS}), partition {PARTITION}, "
              f"state in {cluster.root}", file=sys.stderr)
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    if command == "status":
        if not cluster.running():
            print(f"no test cluster running in {cluster.root}", file=sys.stderr)
            return 3
        for args in (("sinfo",), ("squeue",)):
            print(cluster.run(*args).stdout, end="")
        return 0
    stopped = cluster.stop()
    print(f"stopped {', '.join(stopped)}" if stopped else f"nothing running in {cluster.root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
