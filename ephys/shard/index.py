"""Random access to shard members: an index of byte offsets from a tar's headers.

A shard is a plain (USTAR) tar of ``<key>.eeg.npy`` and ``<key>.json`` members (:mod:`ephys.shard.writer`).
:func:`shard_index` reads the headers only (``tarfile`` seeks past each member's data) and returns where each
selected sample's two members lie, so a reader can ``seek`` and read exactly one sample.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ephys.errors import ManifestError
from ephys.schemas.manifest import Manifest
from ephys.schemas.urls import is_url
from ephys.shard.reader import EEG_MEMBER, META_MEMBER, split_name

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
            key, ext = split_name(m.name)
            if key is not None and (keys is None or key in keys) and ext in (EEG_MEMBER, META_MEMBER) and m.isfile():
                found.setdefault(key, {}).setdefault(ext, (m.offset_data, m.size))
    return {k: (v[EEG_MEMBER], v[META_MEMBER]) for k, v in found.items() if len(v) == 2}


def local_shard(url: str, manifest_path: Path, reader: str) -> Path:
    """The local path of a shard URL as :meth:`Manifest.resolve_urls` gives it (a path or ``file://``).

    Raises ManifestError for any other scheme: ``reader`` (e.g. ``"EpochDataset"``) reads local shards only.
    """
    if url.startswith("file://"):
        return Path(url[len("file://") :])
    if is_url(url):
        raise ManifestError(f"{reader} reads local shards only, not {url.split('://')[0]}:// URLs "
                            "(copy them, or stream them with the pretraining loader)", str(manifest_path))
    return Path(url)


def manifest_shard_indexes(manifest: Manifest, manifest_path: str | Path,
                           reader: str) -> Iterator[tuple[int, Path, list[str], dict[str, tuple[Span, Span]]]]:
    """For each shard of ``manifest``: ``(shard number, local path, selected keys in shard order, their spans)``.

    Raises
    ------
    ManifestError
        A remote shard (:func:`local_shard`), a missing one (moved or deleted since the manifest was made), one
        that is not a tar, or one that lacks a selected epoch (not the shard the manifest was made from).
    """
    manifest_path = Path(manifest_path)
    for i, (s, url) in enumerate(zip(manifest.shards, manifest.resolve_urls(manifest_path))):
        path = local_shard(url, manifest_path, reader)
        keys = s.keys
        try:
            index = shard_index(path, set(keys))
        except FileNotFoundError:
            raise ManifestError(f"shard {s.url} is missing (moved or deleted since the manifest was made)",
                                str(manifest_path)) from None
        except (OSError, tarfile.TarError) as exc:
            raise ManifestError(f"shard {s.url} cannot be read as a tar ({type(exc).__name__})",
                                str(manifest_path)) from None
        missing = [k for k in keys if k not in index]
        if missing:
            raise ManifestError(f"shard {s.url} lacks {len(missing)} selected epochs (first {missing[0]}): "
                                "not the shard the manifest was made from", str(manifest_path))
        yield i, path, keys, index


def manifest_samples(manifest: Manifest, manifest_path: str | Path, reader: str, *,
                     eeg: bool = True) -> Iterator[tuple[dict, np.ndarray | None]]:
    """``(meta, eeg)`` of every selected epoch, shard by shard in manifest order: the parsed JSON member and, with
    ``eeg``, the ``.eeg.npy`` array (float16 µV ``(C, T)``; None without), each read with one seek.

    Raises ManifestError as :func:`manifest_shard_indexes` does.
    """
    for _, path, keys, index in manifest_shard_indexes(manifest, manifest_path, reader):
        with open(path, "rb") as f:
            for k in keys:
                (eo, es), (jo, js) = index[k]
                f.seek(jo)
                meta = json.loads(f.read(js))
                arr = None
                if eeg:
                    f.seek(eo)
                    arr = np.load(io.BytesIO(f.read(es)), allow_pickle=False)
                yield meta, arr
