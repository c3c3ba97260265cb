"""Streaming SHA-256: the one helper every stage hashes bytes with.

A recording's hash (:mod:`ephys.ingest.hashing`), a shard's hash as it is written
(:mod:`ephys.shard.writer`), checked (:mod:`ephys.catalog.verify`) and read
(:mod:`ephys.shard.reader`, the pretraining loader) all go through :func:`sha256_stream`,
:class:`HashingReader` or :class:`HashingWriter`, so "the SHA-256 of a file" means one thing:
``hashlib.sha256`` over its bytes in order, read in chunks of :data:`READ_CHUNK` (the digest does
not depend on the chunk size).
"""

from __future__ import annotations

import hashlib
import io

#: Bytes per read when hashing (8 MiB: large sequential reads, a small fixed buffer).
READ_CHUNK = 8 * 1024 * 1024


def sha256_stream(f, *, limit: int | None = None, buffer: bytearray | memoryview | None = None) -> tuple[str, int]:
    """``(SHA-256 hex, bytes hashed)`` of what the open binary stream ``f`` has left.

    Parameters
    ----------
    f : binary file object
        Read from its current position to its end, or ``limit`` bytes at most.
    limit : int, optional
        Stop after this many bytes (a file hashed up to the size it had when opened).
    buffer : bytearray or memoryview, optional
        Reused for every read (``readinto``, no allocation per chunk) when ``f`` has ``readinto``;
        default a :data:`READ_CHUNK` buffer.

    Raises
    ------
    OSError
        What ``f.read`` raises.
    """
    h, n = hashlib.sha256(), 0
    view = memoryview(buffer if buffer is not None else bytearray(READ_CHUNK))
    readinto = getattr(f, "readinto", None)
    while limit is None or n < limit:
        want = len(view) if limit is None else min(len(view), limit - n)
        if readinto is not None:
            got = readinto(view[:want]) or 0
            chunk = view[:got]
        else:
            chunk = f.read(want) or b""
            got = len(chunk)
        if not got:
            break
        h.update(chunk)
        n += got
    return h.hexdigest(), n


class HashingReader:
    """A read-only stream over ``stream`` that SHA-256s every byte read through it.

    Lets one pass both parse a file (e.g. ``tarfile`` in stream mode) and hash it; :meth:`finish`
    reads and hashes what the parser left (a tar's closing blocks and padding).
    """

    def __init__(self, stream):
        self._stream, self.digest, self.n_bytes = stream, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.digest.update(data)
        self.n_bytes += len(data)
        return data

    def finish(self) -> str:
        """Read to the end and return the hex digest of every byte of the stream."""
        while self.read(READ_CHUNK):
            pass
        return self.digest.hexdigest()


class HashingWriter(io.RawIOBase):
    """A write-through binary stream over ``f`` that SHA-256s what passes (``digest``) and counts it
    (``tell``, which ``tarfile`` needs)."""

    def __init__(self, f):
        super().__init__()
        self.f, self.pos, self.digest = f, 0, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def write(self, b) -> int:
        self.digest.update(b)
        self.pos += len(b)
        return self.f.write(b)
