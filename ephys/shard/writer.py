"""Deterministic, atomic WebDataset tar shards.

A shard is a POSIX tar of samples; each sample is ``<key>.eeg.npy`` (float16 µV,
``(n_channels, n_samples)``) followed by ``<key>.json`` (:class:`~ephys.schemas.EpochMeta`,
sorted keys). Member metadata is fixed (mtime 0, uid/gid 0, mode 0644, no user
names), so the same samples give byte-identical shards on any machine.

A shard is written to ``NAME.tar.tmp``, fsynced, then renamed to ``NAME.tar``
(and the folder fsynced): a shard under its final name is always complete.
Pattern after img2dataset/datatrove's completion-marker writers.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np

from ephys.digest import HashingWriter
from ephys.schemas import EpochMeta, ShardInfo
from ephys.shard.reader import EEG_MEMBER, META_MEMBER

SHARD_PATTERN = "shard-{index:06d}.tar"


def shard_name(index: int) -> str:
    return SHARD_PATTERN.format(index=index)


def npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(x), allow_pickle=False)
    return buf.getvalue()


def _member(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_shard(folder: Path, index: int, samples: list[tuple[np.ndarray, EpochMeta]], url: str | None = None) -> ShardInfo:
    """Write one shard atomically and return its :class:`ShardInfo` (SHA-256 of the tar bytes).

    With ``url`` (an fsspec URL, see :mod:`ephys.shard.store`) the shard is written in ``folder``,
    uploaded to ``url/NAME.tar`` and removed here.

    Raises
    ------
    OSError
        The shard could not be written or uploaded; nothing is left under its final name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = shard_name(index)
    final = folder / name
    tmp = folder / (name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            hashing = HashingWriter(f)
            with tarfile.open(fileobj=hashing, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                tar.copybufsize = 1 << 22  # one write per member, not one per 16 KiB
                for x, meta in samples:
                    data = npy_bytes(x)
                    tar.addfile(_member(f"{meta.key}.{EEG_MEMBER}", len(data)), io.BytesIO(data))
                    js = meta.model_dump_json().encode()
                    tar.addfile(_member(f"{meta.key}.{META_MEMBER}", len(js)), io.BytesIO(js))
            f.flush()
            os.fsync(f.fileno())
            n_bytes = f.tell()
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a partial shard behind (e.g. disk full)
        raise
    if url is not None:
        from ephys.shard.store import upload

        try:
            upload(tmp, url, name)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        os.replace(tmp, final)
        fsync_dir(folder)
    return ShardInfo(index=index, name=name, sha256=hashing.digest.hexdigest(), n_samples=len(samples), n_bytes=n_bytes,
                     keys=[m.key for _, m in samples])
