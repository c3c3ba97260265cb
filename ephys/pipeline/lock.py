"""An exclusive lock on an output folder, so two ``ephys ingest`` runs never write one output.

Two runs on one ``--out`` would each take the next shard index from the catalog and rename
their own ``shard-NNNNNN.tar`` over the other's. The lock is ``fcntl.flock`` on ``OUT/.lock``
(held for the whole run and released by the kernel when the process ends, even on SIGKILL, so
a crashed run never leaves a stale lock). The file records who holds it: process id, host and
start time (UTC), nothing about the archive. ``flock`` is local to one host on some network
file systems; a cluster's driver runs on one host, so this is the case it covers.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import datetime, UTC
from pathlib import Path

from ephys.errors import OutputError, OutputLockedError

LOCK_NAME = ".lock"


class OutputLock:
    """Hold ``folder/.lock`` exclusively (a context manager).

    Raises
    ------
    OutputLockedError
        When another process holds it; the message names its pid, host and start time.
    OutputError
        When the lock file cannot be created (read-only output).
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise OutputError(f"cannot create the output lock {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputLockedError(f"the output folder {self.path.parent} is in use by another ephys ingest "
                                    f"({holder}); wait for it to finish or use another --out") from None
        os.ftruncate(fd, 0)
        info = dict(pid=os.getpid(), host=socket.gethostname(),
                    since=datetime.now(UTC).isoformat(timespec="seconds"))
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on host {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
