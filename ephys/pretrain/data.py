"""Manifest-selected epochs as an endless stream of training batches.

Shards are plain tar files of ``<key>.eeg.npy`` (float16 µV, shape
``(n_channels, n_samples)``) and ``<key>.json`` (:class:`~ephys.schemas.epoch.EpochMeta`)
members.  A manifest selects some keys of each shard; :func:`make_loader` reads
only those, through a ``webdataset`` pipeline, and yields float32 tensors
``(batch, n_channels, n_samples)`` in µV.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import logging
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from ephys.errors import ManifestError
from ephys.schemas.manifest import Manifest

log = logging.getLogger(__name__)

READ_CHUNK = 8 * 1024 * 1024  # bytes per read when hashing shards
EEG_MEMBER = "eeg.npy"
DEFAULT_SHUFFLE_BUFFER = 500  # samples (raw float16 bytes, before decoding)


def _is_remote(url: str) -> bool:
    return url.startswith("pipe:") or ("://" in url and not url.startswith("file://"))


def _open_shard(url: str):
    if _is_remote(url):
        return wds.gopen(url, "rb")
    return open(url.removeprefix("file://"), "rb")


def verify_shards(manifest: Manifest, manifest_path: str | Path) -> list[str]:
    """Check that every shard of ``manifest`` exists and has the SHA-256 the manifest records.

    Shards are hashed as a stream, 8 MiB at a time.  Returns the resolved shard URLs.

    Raises
    ------
    ManifestError
        Naming the first shard that is missing, unreadable or whose bytes changed.
    """
    urls = manifest.resolve_urls(manifest_path)
    for shard, url in zip(manifest.shards, urls):
        digest = hashlib.sha256()
        try:
            with _open_shard(url) as f:
                while chunk := f.read(READ_CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            raise ManifestError("shard is missing", url) from None
        except OSError as exc:
            raise ManifestError(f"shard cannot be read ({exc.strerror or exc})", url) from None
        if digest.hexdigest() != shard.sha256:
            raise ManifestError(
                f"shard bytes changed since the manifest was made: sha256 {digest.hexdigest()[:16]}... "
                f"!= {shard.sha256[:16]}...",
                url,
            )
    return urls


def _sample_key(member_name: str) -> tuple[str, str]:
    """``(key, extension)`` of a tar member, split as webdataset does (at the first dot of the basename)."""
    folder, _, base = member_name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def _npy_shape(f) -> tuple[int, ...]:
    version = np.lib.format.read_magic(f)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f"unsupported npy version {version}")
    shape, _, _ = readers[version](f)
    return shape


def _first_shape(url: str, keys: frozenset[str]) -> tuple[int, ...] | None:
    """Shape of the first readable selected ``eeg.npy`` of a shard, from its header only."""
    with _open_shard(url) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for member in tar:
            key, ext = _sample_key(member.name)
            if ext != EEG_MEMBER or key not in keys:
                continue
            try:
                return _npy_shape(tar.extractfile(member))
            except ValueError:
                continue
    return None


def shard_layout(manifest: Manifest, manifest_path: str | Path) -> tuple[int, int]:
    """``(n_channels, n_samples)`` of the selected epochs, read from one npy header per shard.

    Raises
    ------
    ManifestError
        If shards differ in channel count or epoch length, disagree with the
        manifest's ``channel_names`` / ``n_samples``, or no selected sample is readable.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for shard, url in zip(manifest.shards, manifest.resolve_urls(manifest_path)):
        if shard.keys and (shape := _first_shape(url, frozenset(shard.keys))) is not None:
            shapes[shard.url] = shape
    if not shapes:
        raise ManifestError("no selected sample has a readable eeg.npy", str(manifest_path))
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{name}: {shape}" for name, shape in shapes.items())
        raise ManifestError(f"shards have mixed channel counts or epoch lengths ({listing})", str(manifest_path))
    shape = next(iter(shapes.values()))
    expected = (len(manifest.channel_names), manifest.n_samples)
    if shape != expected:
        raise ManifestError(
            f"epochs have shape {shape}, the manifest says {expected} (channels, samples)", str(manifest_path)
        )
    return expected


def _is_wanted(sample: dict, wanted: dict[str, frozenset[str]]) -> bool:
    return sample["__key__"] in wanted.get(sample["__url__"], ())


def _decode_eeg(data: bytes | None, shape: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """float32 array in µV, or ``(None, reason)`` when the member is absent or bad."""
    if data is None:
        return None, "no eeg.npy member"
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:  # noqa: BLE001 - any garbage may come back from np.load
        return None, "undecodable eeg.npy"
    if not isinstance(arr, np.ndarray) or arr.shape != shape:
        return None, "wrong shape"
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        return None, "non-finite values"
    return arr, ""


def _decode_stage(src, shape: tuple[int, int], skipped: Counter) -> Iterator[torch.Tensor]:
    """Pipeline stage: samples -> float32 tensors ``(C, T)``; bad samples are counted in ``skipped``."""
    warned: set[str] = set()
    for sample in src:
        arr, reason = _decode_eeg(sample.get(EEG_MEMBER), shape)
        if arr is None:
            skipped[reason] += 1
            if sample["__key__"] not in warned:
                warned.add(sample["__key__"])
                log.warning("skipping sample %s in %s: %s", sample["__key__"], sample.get("__url__"), reason)
            continue
        yield torch.from_numpy(arr)


def make_loader(
    manifest: Manifest,
    manifest_path: str | Path,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
    *,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
):
    """An endless iterable of float32 tensors ``(batch_size, n_channels, n_samples)`` in µV.

    Shards are drawn with replacement (``wds.ResampledShards``, deterministic
    for ``seed``), split by node and DataLoader worker, read as tar streams;
    samples whose key the manifest does not list for that shard are dropped,
    the rest pass a shuffle buffer of ``shuffle_buffer`` raw samples, are
    decoded with ``np.load`` and stacked.  A sample whose ``eeg.npy`` is
    missing, undecodable, of the wrong shape or non-finite is skipped with a
    warning (once per key) and counted in the returned object's ``skipped``
    (a :class:`collections.Counter` by reason; only filled in-process, i.e.
    with ``num_workers=0``).

    With ``num_workers=0`` the batch sequence is a pure function of the
    manifest, ``batch_size`` and ``seed``.  Call :func:`shard_layout` first to
    know the shards agree with the manifest's layout.
    """
    urls = manifest.resolve_urls(manifest_path)
    wanted = {url: frozenset(s.keys) for url, s in zip(urls, manifest.shards) if s.keys}
    if not wanted:
        raise ManifestError("the manifest selects no epochs", str(manifest_path))
    shape = (len(manifest.channel_names), manifest.n_samples)
    skipped: Counter = Counter()
    pipeline = wds.DataPipeline(
        wds.ResampledShards(list(wanted), seed=seed, deterministic=True),
        wds.split_by_node,
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        wds.select(functools.partial(_is_wanted, wanted=wanted)),
        wds.shuffle(shuffle_buffer, initial=max(1, shuffle_buffer // 4), seed=seed),
        functools.partial(_decode_stage, shape=shape, skipped=skipped),
        wds.batched(batch_size, collation_fn=torch.stack, partial=False),
    )
    loader = pipeline
    if num_workers > 0:
        loader = wds.WebLoader(pipeline, batch_size=None, num_workers=num_workers)
    loader.skipped = skipped
    return loader


def segment_seed(seed: int, segment: int) -> int:
    """Loader seed of data segment ``segment`` of a run seeded with ``seed`` (both >= 0)."""
    return int(np.random.SeedSequence([seed, segment]).generate_state(1)[0])


class StepBatches:
    """The batches of training steps ``start_step + 1, start_step + 2, ...`` (endless).

    Steps are grouped in segments of ``reseed_every``; segment ``k`` (steps
    ``k*reseed_every + 1 ... (k+1)*reseed_every``) reads a fresh
    :func:`make_loader` seeded with ``segment_seed(seed, k)``.  Starting inside
    a segment replays (decodes and drops) the batches of its earlier steps, so
    the batch of a given step does not depend on where the run (re)started and
    a resume costs at most ``reseed_every - 1`` extra batches.
    """

    def __init__(self, manifest: Manifest, manifest_path: str | Path, batch_size: int, seed: int,
                 start_step: int = 0, reseed_every: int = 1000, num_workers: int = 0):
        if reseed_every < 1 or start_step < 0 or seed < 0:
            raise ValueError("need reseed_every >= 1, start_step >= 0 and seed >= 0")
        self.args = (manifest, manifest_path, batch_size)
        self.seed, self.start_step, self.reseed_every, self.num_workers = seed, start_step, reseed_every, num_workers
        self._done: Counter = Counter()
        self._current: Counter = Counter()

    @property
    def skipped(self) -> Counter:
        """Samples skipped so far (replayed ones included), by reason."""
        return self._done + self._current

    def __iter__(self) -> Iterator[torch.Tensor]:
        segment, offset = divmod(self.start_step, self.reseed_every)
        while True:
            loader = make_loader(*self.args, segment_seed(self.seed, segment), self.num_workers)
            self._current = loader.skipped
            batches = iter(loader)
            try:
                yield from itertools.islice(batches, offset, self.reseed_every)
            finally:
                getattr(batches, "close", lambda: None)()  # close the shard being read
            self._done += loader.skipped
            self._current = Counter()
            segment, offset = segment + 1, 0
