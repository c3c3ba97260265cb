"""A real single-node Slurm for tests: Debian's slurm-wlm (``slurmctld`` + ``slurmd`` + ``munged``)
started on this machine with a generated ``slurm.conf`` in a temporary folder (its own ports,
state and spool folders; no cgroups: ``proctrack/linuxproc``, ``task/none``), as a site admin
would set up a one-node test cluster. Clients find it through ``SLURM_CONF``.

Without slurm-wlm, or where the daemons cannot start (not root, no munge), :func:`start` returns
the reason instead; the tests skip with it unless ``EPHYS_TEST_REQUIRE_SLURM=1`` (``.ci/run`` sets
it), so CI cannot skip them silently.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REQUIRE_ENV = "EPHYS_TEST_REQUIRE_SLURM"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


@dataclass
class SlurmNode:
    folder: Path
    conf: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(self.folder.glob("*.log")))

    def stop(self) -> None:
        env = {**os.environ, **self.env}
        subprocess.run(["scancel", "--full", "--quiet", "--user", "root"], env=env, capture_output=True, timeout=30)
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


def start(folder: Path) -> SlurmNode | str:
    """Start the cluster under ``folder``; returns it, or why it cannot run here."""
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch", "sinfo") if shutil.which(b) is None]
    if missing:
        return f"Slurm is not installed (no {', '.join(missing)}): apt-get install slurm-wlm"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd for the test needs root"
    if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        subprocess.run(["munged", "--force"], capture_output=True)
        time.sleep(0.5)
        if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode != 0:
            return "munged (Slurm's authentication) does not start"
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=ephystest", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}", "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge",
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}", f"SlurmdPidFile={folder / 'slurmd.pid'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "MpiDefault=none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "ReturnToService=2", "SchedulerType=sched/backfill",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory={int(_mem_mib() * 0.8)} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", "",
    ]))
    node = SlurmNode(folder, conf)
    env = {**os.environ, **node.env}
    for daemon in ("slurmctld", "slurmd"):
        log = open(folder / f"{daemon}.log", "wb")  # noqa: SIM115 - closed once the process has it
        node.procs.append(subprocess.Popen([daemon, "-D", "-f", str(conf)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))
        log.close()
        time.sleep(1.0 if daemon == "slurmctld" else 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=env, capture_output=True, text=True)
        if r.stdout.strip() == "idle":
            return node
        if any(p.poll() is not None for p in node.procs):
            break
        time.sleep(0.5)
    logs = node.logs()
    node.stop()
    return f"slurmctld/slurmd did not bring the node up within 60 s:\n{logs}"
