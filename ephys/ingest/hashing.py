"""Streaming SHA-256 of recordings (one file or a multi-file set)."""

from __future__ import annotations

import hashlib

from ephys.errors import UnreadableFileError


def sha256_file(path, buffer_bytes: int = 8 * 1024 * 1024) -> str:
    """Streaming SHA-256 (hex) of one file, read in large buffered chunks."""
    return hash_recording([str(path)], buffer_bytes)[0]


def hash_recording(files: list[str], buffer_bytes: int = 8 * 1024 * 1024) -> tuple[str, int]:
    """``(sha256 hex, total bytes)`` of a recording.

    A single file hashes to its own SHA-256. A multi-file recording (BrainVision
    .vhdr/.vmrk/.eeg) hashes to SHA-256 over its members' hashes in the given
    order (primary file first), so renaming the set keeps the identity.

    Raises
    ------
    UnreadableFileError
        When a member cannot be opened or read (permissions, I/O error, vanished).
    """
    hashes, total = [], 0
    buf = bytearray(buffer_bytes)
    view = memoryview(buf)
    for path in files:
        h = hashlib.sha256()
        try:
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
                    total += n
        except OSError as exc:
            raise UnreadableFileError(f"cannot read: {exc.strerror or type(exc).__name__}", path) from None
        hashes.append(h.hexdigest())
    if len(hashes) == 1:
        return hashes[0], total
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest(), total
