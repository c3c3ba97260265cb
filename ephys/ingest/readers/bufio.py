"""The file object every ephys reader reads through: buffered, never memory-mapped.

:class:`BufferedFile` is a raw, seekable file. A ``readinto`` larger than
``piece_bytes`` is split into ``piece_bytes`` ``pread`` calls that ``io_threads``
threads issue at once, so several requests are in flight on a network share —
as NFS clients keep several RPCs outstanding — instead of one round-trip after
another. On a local disk this changes nothing measurable. Readers allocate one
buffer and call ``readinto`` with large views (several MiB): a handful of
calls per recording.

Measured through a FUSE share that adds 1 ms per request (benchmarks/netshare.py):
reading 64 MiB took 0.35 s sequentially (and with a memory map), 0.12-0.15 s with
4-8 requests in flight.
"""

from __future__ import annotations

import io
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

from ephys.errors import UnreadableFileError

#: Requests kept in flight for one large read.
IO_THREADS = 4
#: Size of one request of a split read (bytes).
PIECE_BYTES = 1 << 20


class BufferedFile(io.RawIOBase):
    """A regular file opened once for large reads.

    Raises
    ------
    OSError
        From ``open`` (missing, permissions) or ``IsADirectoryError`` for anything
        but a regular file; readers turn these into :class:`~ephys.errors.UnreadableFileError`.
    """

    def __init__(self, path, *, io_threads: int = IO_THREADS, piece_bytes: int = PIECE_BYTES):
        super().__init__()
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise IsADirectoryError(21, "not a regular file", str(path))
        self._fd, self._pos = fd, 0
        self.io_threads, self.piece_bytes = max(1, int(io_threads)), max(4096, int(piece_bytes))
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.n_requests = 0  # pread calls made, for accounting

    # io.RawIOBase protocol
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: os.fstat(self._fd).st_size}[whence]
        self._pos = base + offset
        return self._pos

    def _pread(self, offset: int, view: memoryview) -> int:
        """Fill ``view`` from ``offset`` (short only at end of file)."""
        got = 0
        while got < len(view):
            k = os.preadv(self._fd, [view[got:]], offset + got)
            with self._lock:
                self.n_requests += 1
            if not k:
                break
            got += k
        return got

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        n = len(view)
        if n <= self.piece_bytes or self.io_threads == 1:
            got = self._pread(self._pos, view)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.io_threads, thread_name_prefix="ephys-io")
            starts = range(0, n, self.piece_bytes)
            parts = [view[s : s + self.piece_bytes] for s in starts]
            counts = list(self._pool.map(self._pread, [self._pos + s for s in starts], parts))
            got = 0
            for part, k in zip(parts, counts):
                got += k
                if k < len(part):
                    break  # end of file: later pieces are empty
        self._pos += got
        return got

    # Positioned reads for readers (``readinto`` fills its buffer unless the file ends first)
    def readinto_at(self, offset: int, b) -> int:
        """Fill ``b`` with the bytes at ``offset``; returns the count, short only at end of file."""
        self._pos = offset
        return self.readinto(b)

    def read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer only at end of file)."""
        buf = bytearray(n)
        got = self.readinto_at(offset, buf)
        return bytes(buf) if got == n else bytes(buf[:got])

    def read_ranges(self, spans: list[tuple[int, int]], gap: int) -> list[bytes]:
        """Bytes of each ``(offset, length)`` span, in the order given.

        Spans are fetched in offset order, and spans less than ``gap`` bytes apart
        share one read, so scattered header sections cost a few requests on a
        network share. A span past the end of the file comes back short.
        """
        order = sorted(range(len(spans)), key=lambda i: spans[i][0])
        out: list[bytes] = [b""] * len(spans)
        i = 0
        while i < len(order):
            lo = spans[order[i]][0]
            hi, j = lo + spans[order[i]][1], i + 1
            while j < len(order) and spans[order[j]][0] <= hi + gap:
                hi, j = max(hi, sum(spans[order[j]])), j + 1
            raw = self.read_at(lo, hi - lo)
            for k in order[i:j]:
                out[k] = raw[spans[k][0] - lo : sum(spans[k]) - lo]
            i = j
        return out

    def close(self) -> None:
        if self.closed:
            return
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        os.close(self._fd)
        super().close()


def open_for_reading(path) -> BufferedFile:
    """Open a recording file for a reader.

    Raises
    ------
    UnreadableFileError
        When the file cannot be opened (missing, permissions, not a regular file).
    """
    try:
        return BufferedFile(path)
    except OSError as exc:
        raise UnreadableFileError(f"cannot open: {exc.strerror or type(exc).__name__}", str(path)) from None
