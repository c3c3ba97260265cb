"""Test-only fault injection (``EPHYS_TEST_FAILPOINTS``): a worker that hangs or dies, a block that kills its
reader, a driver killed between a shard's rename and its catalog commit. Unset in production."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path


def failpoints() -> list[tuple[str, str]]:
    """``(action, argument)`` pairs of the test-only ``EPHYS_TEST_FAILPOINTS`` ("action:argument,...")."""
    items = os.environ.get("EPHYS_TEST_FAILPOINTS", "").split(",")
    return [(a, arg) for a, _, arg in (x.strip().partition(":") for x in items) if a]


def recording_failpoint(sha256: str, spool_dir: str) -> None:
    """Fault injection for tests: ``EPHYS_TEST_FAILPOINTS="hang:<sha prefix>,crash:<prefix>,crash-once:<prefix>"``.

    ``hang`` blocks like a reader stuck on a dead network share; ``crash`` kills
    the worker process as the kernel's OOM killer or a segfault in a C library
    would; ``crash-once`` does so only on the first attempt (see also :func:`block_failpoint`). Called at the
    start of the recording's task.
    """
    for action, prefix in failpoints():
        if not prefix or not sha256.startswith(prefix):
            continue
        if action == "hang":
            threading.Event().wait()
        elif action == "crash" or action == "crash-once":
            marker = Path(spool_dir) / f"{sha256}.crashed"
            if action == "crash-once" and marker.exists():
                continue
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def block_failpoint(sha256: str, e0: int) -> None:
    """``crash-block:<sha prefix>@<epoch>``: whoever reads the block of that recording starting at that epoch
    dies (an OOM kill, a segfault on a damaged stretch of the file), in a block task or the recording's own."""
    for action, arg in failpoints():
        prefix, _, first = arg.partition("@")
        if action == "crash-block" and prefix and sha256.startswith(prefix) and e0 == int(first or 0):
            os.kill(os.getpid(), signal.SIGKILL)


def driver_failpoint(stage: str, index: int) -> None:
    """``kill-driver:renamed:3`` SIGKILLs the driver right after shard 3 is renamed into place (before its catalog
    commit); ``kill-driver:committed:3`` right after the commit (before the hash log)."""
    if ("kill-driver", f"{stage}:{index}") in failpoints():
        os.kill(os.getpid(), signal.SIGKILL)
