"""A simulated network share: a FUSE pass-through file system that adds a fixed latency to
every read request and counts them (``fusepy`` + Debian's ``libfuse2``; needs /dev/fuse).

Used by the reader benchmarks: NFS-like shares turn each read request into a network
round-trip, which is why memory-mapped readers (many small page-fault reads) are slow there
and buffered readers (few large reads) are fast (EPI-250k's finding).

    with LatencyShare(src_dir, latency_s=0.001) as share:
        path = share.path("file.TRC")          # read through the share
        share.reset(); ...read...; share.stats()  # -> (requests, bytes)

The kernel splits requests larger than 128 KiB (libfuse2 cannot negotiate larger ones), so
the share's request count has a floor of 8 per MiB for any reader; readers also differ in the
read calls they issue themselves (counted separately by the benchmark), and in how many requests they keep in flight:
the daemon is multi-threaded, like an NFS server that answers concurrent RPCs. The page
cache stays on (memory maps need it); mount a fresh share per measurement for a cold cache.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import subprocess
import tempfile
import time
from pathlib import Path


def _serve(src: str, mnt: str, latency_s: float, counters, ready) -> None:
    from fuse import FUSE, FuseOSError, Operations

    class LatencyFS(Operations):
        def _p(self, path):
            return os.path.join(src, path.lstrip("/"))

        def getattr(self, path, fh=None):
            try:
                st = os.lstat(self._p(path))
            except OSError as exc:
                raise FuseOSError(exc.errno) from None
            return {k: getattr(st, k) for k in ("st_mode", "st_size", "st_nlink", "st_uid", "st_gid",
                                                "st_atime", "st_mtime", "st_ctime")}

        def readdir(self, path, fh):
            return [".", ".."] + os.listdir(self._p(path))

        def open(self, path, flags):
            if flags & (os.O_WRONLY | os.O_RDWR):
                raise FuseOSError(errno.EROFS)
            return os.open(self._p(path), os.O_RDONLY)

        def read(self, path, size, offset, fh):
            time.sleep(latency_s)
            with counters.get_lock():
                counters[0] += 1
                counters[1] += size
            return os.pread(fh, size, offset)

        def release(self, path, fh):
            os.close(fh)

    ready.set()
    FUSE(LatencyFS(), mnt, foreground=True, ro=True, nothreads=False, allow_other=False)


class LatencyShare:
    def __init__(self, src: str | Path, latency_s: float = 0.001):
        self.src, self.latency_s = str(src), latency_s
        self.mnt = tempfile.mkdtemp(prefix="ephys-share-")
        self.counters = mp.Array("q", 2)

    def __enter__(self) -> LatencyShare:
        ready = mp.Event()
        self.proc = mp.get_context("fork").Process(
            target=_serve, args=(self.src, self.mnt, self.latency_s, self.counters, ready), daemon=True
        )
        self.proc.start()
        ready.wait(10)
        for _ in range(100):
            if os.path.ismount(self.mnt):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("FUSE mount did not come up (is /dev/fuse available and libfuse2 installed?)")
        return self

    def path(self, name: str) -> Path:
        return Path(self.mnt) / name

    def reset(self) -> None:
        with self.counters.get_lock():
            self.counters[0] = self.counters[1] = 0

    def stats(self) -> tuple[int, int]:
        return self.counters[0], self.counters[1]

    def __exit__(self, *exc) -> None:
        subprocess.run(["fusermount", "-u", self.mnt], check=False, capture_output=True)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
        os.rmdir(self.mnt)
