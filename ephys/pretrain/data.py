"""Manifest-selected epochs as an endless stream of training batches.

Shards are plain tar files of ``<key>.eeg.npy`` (float16 µV, shape
``(n_channels, n_samples)``) and ``<key>.json`` (:class:`~ephys.schemas.epoch.EpochMeta`)
members.  A manifest selects some keys of each shard; :func:`make_loader` reads
only those, through a ``webdataset`` pipeline, and yields float32 tensors
``(batch, n_channels, n_samples)`` in µV.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import logging
import random
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from ephys.digest import HashingReader, sha256_stream
from ephys.errors import ManifestError
from ephys.schemas.manifest import Manifest
from ephys.shard.reader import EEG_MEMBER, iter_members, iter_samples, npy_shape, open_shard

log = logging.getLogger(__name__)

DEFAULT_SHUFFLE_BUFFER = 500  # samples (raw float16 bytes, before decoding)


#: ``(url, sha256)`` of the shards this process has hashed while streaming them, and found intact.
_VERIFIED: set[tuple[str, str]] = set()


def _check_shape(samples: list[dict], shape: tuple[int, int], url: str) -> None:
    """ManifestError unless the first readable ``eeg.npy`` among ``samples`` has ``shape``."""
    for x in samples:
        try:
            got = npy_shape(x[EEG_MEMBER])
        except (KeyError, TypeError, ValueError):
            continue
        if tuple(got) != tuple(shape):
            raise ManifestError(f"epochs have shape {tuple(got)}, the manifest says {tuple(shape)} (channels, samples)", url)
        return


def _shard_error(exc: OSError, url: str) -> ManifestError:
    """The typed error naming a shard that is missing or cannot be read."""
    if isinstance(exc, FileNotFoundError):
        return ManifestError("shard is missing", url)
    return ManifestError(f"shard cannot be read ({exc.strerror or exc})", url)


def _open_or_raise(url: str):
    try:
        return open_shard(url)
    except OSError as exc:
        raise _shard_error(exc, url) from None


def _tar_samples(src: Iterator[dict], expected: dict[str, str] | None = None,
                 wanted: dict | None = None, shape: tuple[int, int] | None = None) -> Iterator[dict]:
    """Pipeline stage: shard sources (``{"url": ...}``) -> webdataset samples (``{"__key__", "__url__", ext:
    bytes}``), read by :func:`ephys.shard.reader.iter_samples` from :func:`~ephys.shard.reader.open_shard`'s
    stream, so fsspec URLs (``s3://``...) stream like local paths. With ``wanted`` (url -> selected keys) only
    the selected samples are read.

    ``expected`` (url → SHA-256): the first time this process streams a shard, its bytes are hashed
    as they are read and its selected samples held back until the end of the shard; a
    shard whose hash differs raises :class:`ManifestError` naming it before any of its samples is
    yielded, and so does one whose first selected epoch is not of ``shape`` ``(n_channels,
    n_samples)`` (the manifest's layout; :func:`shard_layout` checks only a sample of shards).
    Later passes over a verified shard stream it directly. A shard that is missing or cannot be
    read (also mid-stream) raises :class:`ManifestError` naming it.
    """
    for source in src:
        url = source["url"]
        sha = (expected or {}).get(url)
        keys = wanted.get(url, ()) if wanted is not None else None
        stream = _open_or_raise(url)
        try:
            reader = stream if sha is None or (url, sha) in _VERIFIED else HashingReader(stream)
            try:
                samples = ({"__key__": key, "__url__": url, **members} for key, members in iter_samples(reader, keys))
                if reader is stream:
                    yield from samples
                    continue
                held = list(samples)
                digest = reader.finish()
            except OSError as exc:
                raise _shard_error(exc, url) from None
            except tarfile.TarError as exc:
                raise ManifestError(f"shard is not a readable tar ({exc})", url) from None
            if digest != sha:
                raise ManifestError(f"shard bytes changed since the manifest was made: sha256 {digest[:16]}... "
                                    f"!= {sha[:16]}...", url)
            if shape is not None:
                _check_shape(held, shape, url)
            _VERIFIED.add((url, sha))
            yield from held
        finally:
            stream.close()


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
        try:
            with open_shard(url) as f:
                digest, _ = sha256_stream(f)
        except OSError as exc:
            raise _shard_error(exc, url) from None
        if digest != shard.sha256:
            raise ManifestError(
                f"shard bytes changed since the manifest was made: sha256 {digest[:16]}... "
                f"!= {shard.sha256[:16]}...",
                url,
            )
    return urls


def _first_shape(url: str, keys) -> tuple[int, ...] | None:
    """Shape of the first readable selected ``eeg.npy`` of a shard, from its header."""
    with open_shard(url) as f:
        for _, ext, data in iter_members(f, keys, read=(EEG_MEMBER,)):
            if ext != EEG_MEMBER:
                continue
            try:
                return npy_shape(data)
            except ValueError:
                continue
    return None


def shard_layout(manifest: Manifest, manifest_path: str | Path, max_shards: int | None = None) -> tuple[int, int]:
    """``(n_channels, n_samples)`` of the selected epochs, read from one npy header per shard, of every
    shard or, with ``max_shards`` (at least 2), of that many spread evenly over the manifest (training
    start-up: the loader checks each other shard's layout when it first streams it).

    Raises
    ------
    ManifestError
        If shards differ in channel count or epoch length, disagree with the
        manifest's ``channel_names`` / ``n_samples``, or no selected sample is readable.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    selected = [(shard, url) for shard, url in zip(manifest.shards, manifest.resolve_urls(manifest_path)) if shard.runs]
    if max_shards is not None and len(selected) > max_shards:  # evenly spread, first and last included
        picks = sorted({round(i * (len(selected) - 1) / (max_shards - 1)) for i in range(max_shards)})
        selected = [selected[i] for i in picks]
    for shard, url in selected:
        try:
            shape = _first_shape(url, shard.selection())
        except OSError as exc:
            raise _shard_error(exc, url) from None
        except tarfile.TarError as exc:
            raise ManifestError(f"shard is not a readable tar ({exc})", url) from None
        if shape is not None:
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


@dataclass(frozen=True)
class SampleFilter:
    """Load-time selection from each sample's ``json`` member (:class:`~ephys.schemas.epoch.EpochMeta`).

    The same predicates as the catalog's (``ephys manifest create --score/--valid/--stage/--category``), read from
    the copy of the catalog's figures that every shard sample carries, so a filter at load time keeps exactly the
    epochs a manifest made with the same clauses selects:

    * ``min_score``: ``qc.score >= min_score``;
    * ``valid_only``: ``qc.valid``;
    * ``stages``: ``sleep.stage`` in the list (unstaged epochs are dropped);
    * ``categories``: at least one annotation whose ``category`` is in the list and is not negated.

    A sample whose ``json`` is missing or unreadable is dropped and counted as ``"bad metadata"``.
    """

    min_score: float | None = None
    valid_only: bool = False
    stages: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, data) -> SampleFilter:
        """From a :class:`~ephys.pretrain.config.DataConfig` (or anything with the same attributes)."""
        return cls(data.min_score, data.valid_only, tuple(data.stages) if data.stages is not None else None,
                   tuple(data.categories) if data.categories is not None else None)

    @property
    def active(self) -> bool:
        return self.min_score is not None or self.valid_only or self.stages is not None or self.categories is not None

    def keep(self, meta: dict) -> bool:
        """Whether an epoch with metadata ``meta`` (the parsed ``json`` member) passes."""
        qc = meta.get("qc") or {}
        if self.min_score is not None and not qc.get("score", 0.0) >= self.min_score:
            return False
        if self.valid_only and not qc.get("valid", False):
            return False
        if self.stages is not None and ((meta.get("sleep") or {}).get("stage") not in self.stages):
            return False
        if self.categories is not None and not any(
            a.get("category") in self.categories and not a.get("negated") for a in meta.get("annotations") or ()
        ):
            return False
        return True


def _filter_stage(src, sample_filter: SampleFilter, skipped: Counter, n_selected: int) -> Iterator[dict]:
    """Pipeline stage: drop samples failing ``sample_filter`` (counted as ``"filtered"``).

    The stream is endless, so a filter that nothing passes would never yield: until a sample passes, the keys seen
    are tracked, and once all ``n_selected`` have been seen a ``ManifestError`` is raised.
    """
    unseen_until_pass: set[tuple[str, str]] | None = set()
    for sample in src:
        try:
            meta = json.loads(sample["json"])
        except (KeyError, TypeError, ValueError):
            skipped["bad metadata"] += 1
            meta = None
        if meta is not None and sample_filter.keep(meta):
            unseen_until_pass = None
            yield sample
            continue
        if meta is not None:
            skipped["filtered"] += 1
        if unseen_until_pass is not None:
            unseen_until_pass.add((sample["__url__"], sample["__key__"]))
            if len(unseen_until_pass) >= n_selected:
                raise ManifestError(f"no sample passes the data filters ({sample_filter})", None)


def _shuffle_stage(src, bufsize: int, seed: int) -> Iterator[dict]:
    """``wds.shuffle`` seeded by ``(seed, rank, DataLoader worker)``: ranks and workers draw different orders.

    (``wds.shuffle(seed=...)`` would give every rank and worker the same order.)
    """
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    rng_seed = int(np.random.SeedSequence([seed, rank, worker]).generate_state(1)[0])
    yield from wds.filters._shuffle(src, bufsize, max(1, bufsize // 4), rng=random.Random(rng_seed))


@functools.lru_cache(maxsize=8)
def _npy_header(shape: tuple[int, int]) -> bytes:
    """The exact ``.npy`` header ``np.save`` writes for a C-order float16 array of ``shape``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f2", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _decode_eeg(data: bytes | None, shape: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """The epoch as an array of ``shape`` in µV (float16 views the bytes, no copy), or ``(None, reason)``.

    Shards hold float16 ``.npy`` written by ``np.save``: the header is compared as bytes and the payload viewed
    with ``np.frombuffer``.  Anything else (another dtype or npy version) goes through ``np.load``.
    """
    if data is None:
        return None, "no eeg.npy member"
    header = _npy_header(shape)
    if data.startswith(header) and len(data) == len(header) + 2 * shape[0] * shape[1]:
        arr = np.frombuffer(data, dtype="<f2", offset=len(header)).reshape(shape)
    else:
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception:  # noqa: BLE001 - any garbage may come back from np.load
            return None, "undecodable eeg.npy"
        if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype.kind != "f":
            return None, "wrong shape"
    if not np.isfinite(arr).all():
        return None, "non-finite values"
    return arr, ""


def _decode_stage(src, shape: tuple[int, int], skipped: Counter) -> Iterator[np.ndarray]:
    """Pipeline stage: samples -> arrays ``(C, T)`` µV; bad samples are skipped, warned once and counted."""
    warned: set[str] = set()
    for sample in src:
        arr, reason = _decode_eeg(sample.get(EEG_MEMBER), shape)
        if arr is None:
            skipped[reason] += 1
            if sample["__key__"] not in warned:
                warned.add(sample["__key__"])
                log.warning("skipping sample %s in %s: %s", sample["__key__"], sample.get("__url__"), reason)
            continue
        yield arr


def _collate(arrays: list[np.ndarray]) -> torch.Tensor:
    """``(B, C, T)`` float32 µV: one stack and one cast for the whole batch."""
    return torch.from_numpy(np.stack(arrays).astype(np.float32, copy=False))


def make_loader(
    manifest: Manifest,
    manifest_path: str | Path,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
    *,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    sample_filter: SampleFilter | None = None,
):
    """An endless iterable of float32 tensors ``(batch_size, n_channels, n_samples)`` in µV.

    Shards are drawn with replacement (``wds.ResampledShards``, deterministic
    for ``seed``), split by node (``torch.distributed`` rank) and DataLoader
    worker, read as tar streams; samples whose key the manifest does not list
    for that shard are dropped, then those failing ``sample_filter``; the rest
    pass a shuffle buffer of ``shuffle_buffer`` raw samples seeded by
    ``(seed, rank, worker)``, are decoded (float16 bytes viewed, not parsed) and
    stacked.  A sample whose ``eeg.npy`` is missing, undecodable, of the wrong
    shape or non-finite is skipped with a warning (once per key) and counted in
    the returned object's ``skipped`` (a :class:`collections.Counter` by reason;
    filtered samples count as ``"filtered"``; only filled in-process, i.e. with
    ``num_workers=0``).

    Every rank gets its own endless stream, so all ranks can take the same
    number of steps (no end-of-epoch hang under DDP).  With ``num_workers=0``
    the batch sequence is a pure function of the manifest, ``batch_size``,
    ``seed`` and the rank.

    Each shard is SHA-256-checked against the manifest the first time this
    process streams it, and its epochs' layout checked, before any of its
    samples is yielded (:func:`_tar_samples`); so start-up costs nothing per
    shard. A shard that is missing, unreadable, changed or of another layout
    raises :class:`~ephys.errors.ManifestError` naming it, when it is drawn.
    """
    urls = manifest.resolve_urls(manifest_path)
    wanted = {url: s.selection() for url, s in zip(urls, manifest.shards) if s.runs}  # runs, not key sets
    if not wanted:
        raise ManifestError("the manifest selects no epochs", str(manifest_path))
    shape = (len(manifest.channel_names), manifest.n_samples)
    skipped: Counter = Counter()
    stages = [
        wds.ResampledShards(list(wanted), seed=seed, deterministic=True),
        wds.split_by_node,
        wds.split_by_worker,
        functools.partial(_tar_samples, expected={url: s.sha256 for url, s in zip(urls, manifest.shards)},
                          wanted=wanted, shape=shape),  # reads only the selected samples of each shard
    ]
    if sample_filter is not None and sample_filter.active:
        n_selected = sum(len(keys) for keys in wanted.values())
        stages.append(functools.partial(_filter_stage, sample_filter=sample_filter, skipped=skipped,
                                        n_selected=n_selected))
    stages += [
        functools.partial(_shuffle_stage, bufsize=shuffle_buffer, seed=seed),
        functools.partial(_decode_stage, shape=shape, skipped=skipped),
        wds.batched(batch_size, collation_fn=_collate, partial=False),
    ]
    loader = pipeline = wds.DataPipeline(*stages)
    if num_workers > 0:
        loader = wds.WebLoader(pipeline, batch_size=None, num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                               persistent_workers=False)
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
                 start_step: int = 0, reseed_every: int = 1000, num_workers: int = 0, *,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, sample_filter: SampleFilter | None = None):
        if reseed_every < 1 or start_step < 0 or seed < 0:
            raise ValueError("need reseed_every >= 1, start_step >= 0 and seed >= 0")
        self.args = (manifest, manifest_path, batch_size)
        self.options = dict(shuffle_buffer=shuffle_buffer, sample_filter=sample_filter)
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
            loader = make_loader(*self.args, segment_seed(self.seed, segment), self.num_workers, **self.options)
            self._current = loader.skipped
            batches = iter(loader)
            try:
                yield from itertools.islice(batches, offset, self.reseed_every)
            finally:
                getattr(batches, "close", lambda: None)()  # close the shard being read
            self._done += loader.skipped
            self._current = Counter()
            segment, offset = segment + 1, 0
