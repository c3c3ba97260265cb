"""Streaming SHA-256 of recordings (one file or a multi-file set), and the fingerprint that ties
the hash to the bytes later read.

A recording's hash names its content in the catalog, the hash log and every shard key, so it
must be the hash of the bytes that were read. Hashing and reading are separate tasks, so each
member's *fingerprint* (device, inode, size, modification and status-change times in ns) is
taken while hashing and compared again before and after reading
(:func:`check_unchanged`): a file replaced (even by one of the same size), rewritten or still
growing in between changes its inode, size or ``st_ctime_ns``, which no user-space call can set
back (POSIX: ``st_ctime`` is updated on every data or metadata change).
"""

from __future__ import annotations

import hashlib
import os
import stat

from ephys.digest import READ_CHUNK, sha256_stream
from ephys.errors import ChangedDuringReadError, SpecialFileError, UnreadableFileError

#: ``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)`` of one member file.
Fingerprint = tuple[int, int, int, int, int]


def _fingerprint(st: os.stat_result) -> Fingerprint:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def sha256_file(path, buffer_bytes: int = READ_CHUNK) -> str:
    """Streaming SHA-256 (hex) of one file, read in large buffered chunks."""
    return hash_recording([str(path)], buffer_bytes)[0]


def _hash_member(path: str, view: memoryview) -> tuple[str, int, Fingerprint]:
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableFileError(f"cannot open: {exc.strerror or type(exc).__name__}", path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SpecialFileError(SpecialFileError.default_reason, path)
        with open(fd, "rb", buffering=0, closefd=False) as f:
            digest, n = sha256_stream(f, limit=st.st_size, buffer=view)
            grew = f.readinto(view[:1])
        after = os.fstat(fd)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read: {exc.strerror or type(exc).__name__}", path) from None
    finally:
        os.close(fd)
    if n < st.st_size or grew or _fingerprint(after) != _fingerprint(st):
        raise ChangedDuringReadError("the file changed while it was hashed (still being written?); "
                                     "it is retried on the next run", path)
    return digest, st.st_size, _fingerprint(st)


def hash_recording(files: list[str], buffer_bytes: int = READ_CHUNK,
                   fingerprints: list | None = None) -> tuple[str, int]:
    """``(sha256 hex, total bytes)`` of a recording.

    A single file hashes to its own SHA-256. A multi-file recording (BrainVision
    .vhdr/.vmrk/.eeg) hashes to SHA-256 over its members' hashes in the given
    order (primary file first), so renaming the set keeps the identity. Each member is read
    up to the size it had when opened, never beyond; ``fingerprints``, when given, receives
    one :data:`Fingerprint` per member, for :func:`check_unchanged`.

    Raises
    ------
    UnreadableFileError
        When a member cannot be opened or read (permissions, I/O error, vanished).
    SpecialFileError
        When a member is not a regular file (FIFO, socket, device): it is not read at all.
    ChangedDuringReadError
        When a member grew or changed while it was hashed.
    """
    hashes, total = [], 0
    view = memoryview(bytearray(max(int(buffer_bytes), 1)))
    for path in files:
        sha, n, fp = _hash_member(path, view)
        hashes.append(sha)
        total += n
        if fingerprints is not None:
            fingerprints.append(fp)
    if len(hashes) == 1:
        return hashes[0], total
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest(), total


def check_unchanged(files: list[str], fingerprints: list[Fingerprint], primary: str | None = None) -> None:
    """Raise :class:`~ephys.errors.ChangedDuringReadError` unless every member still has the
    fingerprint it had when hashed (see the module docstring).

    ``files`` and ``fingerprints`` are parallel lists, as filled by :func:`hash_recording`;
    ``primary`` names the recording in the error (default the first file).
    """
    for path, fp in zip(files, fingerprints):
        try:
            now = _fingerprint(os.stat(path))
        except OSError:
            now = None
        if now != tuple(fp):
            raise ChangedDuringReadError("the file was replaced or changed after it was hashed; the hash would "
                                         "not be the content read. It is retried on the next run", primary or files[0])
