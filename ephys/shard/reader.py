"""Reading shards: the one place that knows how a shard's tar is laid out for readers.

A shard (:mod:`ephys.shard.writer`) is a USTAR tar whose members are named ``<key>.<ext>``, with
the two extensions :data:`EEG_MEMBER` (``eeg.npy``: float16 µV ``(n_channels, n_samples)``) and
:data:`META_MEMBER` (``json``: :class:`~ephys.schemas.epoch.EpochMeta`). A *sample* is the run of
consecutive members with the same key (the WebDataset convention, whose
``tariterators.base_plus_ext`` split this follows: the key is the member's path up to the first dot
of its base name). ``catalog verify``, the pretraining loader, ``ephys embed`` and ``ephys probe``
read shards through :func:`open_shard` and :func:`iter_samples`, optionally through a
:class:`~ephys.digest.HashingReader` to hash the bytes while they are parsed; random access by byte
offset is :mod:`ephys.shard.index`.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
from collections.abc import Container, Iterator

import numpy as np

from ephys.schemas.urls import is_url

EEG_MEMBER = "eeg.npy"
META_MEMBER = "json"


def split_name(member_name: str) -> tuple[str | None, str]:
    """``(key, extension)`` of a member name, split at the first dot of its base name (``a/b.eeg.npy`` ->
    ``("a/b", "eeg.npy")``); ``(None, "")`` when the base name has no dot (not a sample member)."""
    folder, _, base = member_name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        return None, ""
    return (f"{folder}/{stem}" if folder else stem), ext


def open_shard(url: str):
    """A binary stream of one shard.

    ``url`` is a local path or ``file://`` URL (opened only if it is a regular file: a FIFO or a device named
    in a manifest, such as ``/dev/zero``, would block or never end), a ``pipe:`` or ``http(s)://`` URL (through
    webdataset's ``gopen``) or any other fsspec URL (``s3://``, ``gs://``...; :mod:`ephys.shard.store`).

    Raises
    ------
    OSError
        The shard cannot be opened (``FileNotFoundError`` when missing, ``EINVAL`` when not a regular file).
    """
    if url.startswith(("pipe:", "http://", "https://")):
        import webdataset as wds

        return wds.gopen(url, "rb")
    if is_url(url) and not url.startswith("file://"):
        import fsspec

        return fsspec.open(url, "rb").open()
    fd = os.open(url.removeprefix("file://"), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def seekable(f) -> bool:
    """Whether ``f`` can seek (then :func:`iter_samples` skips unread members' data instead of reading it)."""
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def iter_members(stream, keys: Container[str] | None = None,
                 read: Container[str] | None = None) -> Iterator[tuple[str, str, bytes | None]]:
    """``(key, extension, data)`` of each sample member of the tar ``stream``, in shard order: the members
    :func:`iter_samples` groups, one at a time (so a reader that wants one member stops there).

    Parameters and errors as :func:`iter_samples`.
    """
    with tarfile.open(fileobj=stream, mode="r:" if seekable(stream) else "r|") as tar:
        for ti in tar:
            key, ext = split_name(ti.name)
            if key is None or not ti.isfile() or (keys is not None and key not in keys):
                continue
            yield key, ext, (tar.extractfile(ti).read() if read is None or ext in read else None)


def iter_samples(stream, keys: Container[str] | None = None,
                 read: Container[str] | None = None) -> Iterator[tuple[str, dict[str, bytes | None]]]:
    """``(key, {extension: data})`` of each sample of the tar ``stream``, in shard order.

    Parameters
    ----------
    stream : binary file object
        The shard (:func:`open_shard`, or a :class:`~ephys.digest.HashingReader` over one: every byte then
        passes through it, skipped members included).
    keys : container of str, optional
        Only samples with these keys (default all); other members are skipped unread.
    read : container of str, optional
        Extensions whose data is read (default all); a member of another extension is listed with ``None``
        (present, not read).

    Members that are not regular files, or whose base name has no dot, are skipped. A key that comes back after
    other keys, or an extension repeated within a sample, starts a new sample (callers that must see each key
    once keep the first). Shards are uncompressed tars (:mod:`ephys.shard.writer`): seekable streams are read in
    random-access mode (``r:``), so skipped data is sought past, others in stream mode (``r|``). A sample is
    yielded once the next sample's first member (or the end of the tar) is read.

    Raises
    ------
    tarfile.TarError
        ``stream`` is not a (complete) tar.
    OSError
        Reading fails.
    """
    current: str | None = None
    members: dict[str, bytes | None] = {}
    for key, ext, data in iter_members(stream, keys, read):
        if current is not None and (key != current or ext in members):
            yield current, members
            members = {}
        current = key
        members[ext] = data
    if current is not None:
        yield current, members


def npy_shape(data: bytes) -> tuple[int, ...]:
    """The shape in the header of ``.npy`` bytes (version 1.0 or 2.0), without reading the array.

    Raises
    ------
    ValueError
        Not ``.npy`` data, or another version.
    """
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    headers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in headers:
        raise ValueError(f"unsupported npy version {version}")
    return headers[version](f)[0]
