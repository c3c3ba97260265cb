"""Random access to shard members: an index of byte offsets from a tar's headers.

A shard is a plain (USTAR) tar of ``<key>.eeg.npy`` and ``<key>.json`` members (:mod:`ephys.shard.writer`).
:func:`shard_index` reads the headers only (``tarfile`` seeks past each member's data) and returns where each
selected sample's two members lie, so a reader can ``seek`` and read exactly one sample.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

#: ``(offset of the member's data, its size)`` in bytes.
Span = tuple[int, int]


def shard_index(path: str | Path, keys: set[str] | None = None) -> dict[str, tuple[Span, Span]]:
    """``{key: (eeg.npy span, json span)}`` of the samples of the tar at ``path`` that have both members
    (only ``keys`` when given), in no particular order.

    Raises
    ------
    FileNotFoundError, OSError
        The file cannot be read.
    tarfile.TarError
        It is not a tar.
    """
    found: dict[str, dict[str, Span]] = {}
    with tarfile.open(path, "r:") as tar:
        for m in tar:
            key, _, ext = m.name.partition(".")
            if (keys is None or key in keys) and ext in ("eeg.npy", "json") and m.isfile():
                found.setdefault(key, {})[ext] = (m.offset_data, m.size)
    return {k: (v["eeg.npy"], v["json"]) for k, v in found.items() if len(v) == 2}
