"""The per-recording task a Dask worker runs: read -> QC -> condition -> epochs -> stage.

It never touches the catalog and never raises for bad input: every outcome is a
:class:`~ephys.schemas.RecordingResult`. The conditioned epochs are written to
``spool_dir/<sha256>.npy`` (float16 µV, shape ``(n_epochs, n_channels,
n_samples)``), fsynced and renamed into place, for the driver to pack.

A recording is processed in blocks of ``config.block_epochs`` epochs, in two passes (QC figures
of every block, then, once the bad channels are known, conditioning of every block). On a
Dask worker, each pass of a recording of several blocks is also offered to the cluster as one
task per block (:class:`_DaskParts`), so one long monitoring file keeps every worker busy.
Block tasks open the file themselves and write their epochs at their rows of the spool file,
so only small QC arrays cross the network, and the result equals processing the blocks in one
process, bit for bit.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple
from collections.abc import Callable

import numpy as np

from ephys.errors import (ChangedDuringReadError, EphysError, NoEEGError, NoSignalError, NoUsableChannelsError,
                          OutputError, RejectedError, TooShortError)  # fmt: skip
from ephys.annotate.attach import label_annotations
from ephys.annotate.taxonomy import load_taxonomy
from ephys.ingest.condition import condition, fir_kernel, resample_ratio
from ephys.ingest.hashing import check_unchanged
from ephys.ingest.identity import (age_years, author_pseudonym, normalise_sex, pseudonym, scrub_split, scrub_text,
                                   shifted_start)
from ephys.ingest.names import NameDetector
from ephys.ingest.montage import get_montage
from ephys.ingest.readers import open_recording
from ephys.qc.epochs import whole_epochs
from ephys.qc.features import ChannelFeatures, segment_features
from ephys.qc.record import assess
from ephys.schemas import Annotation, ChannelInfo, EpochRecord, EpochStage, Failure, IngestConfig, RecordingResult, RecordingStatus

F16_MAX = float(np.finfo(np.float16).max)
#: EEG channels sampled slower than this (Hz) are not used: below it the 0.5 Hz high-pass and the
#: anti-alias low-pass (0.4 x sfreq) leave almost no band; in practice only damaged headers give such rates.
MIN_EEG_SFREQ = 32.0
#: Channels conditioned together (float32 filter buffers of a few block lengths each).
CONDITION_GROUP = 4
#: Dask priority of block tasks: above every recording task (whose priority follows the packing order), so
#: workers finish the recordings already open before they open new ones.
BLOCK_PRIORITY = 1 << 40


def select_channels(channels: list[ChannelInfo], config: IngestConfig, path: str) -> tuple[list[ChannelInfo], list[str], list[bool]]:
    """EEG channels to read, output channel names and mask, for the configured montage.

    Raises
    ------
    NoEEGError, InsufficientCoverageError
    """
    eeg = [c for c in channels if c.kind == "eeg" and c.to_uv is not None]
    if not eeg:
        raise NoEEGError("no EEG channels (no voltage channel with an EEG label or 10-20 name)", path)
    slow = [c for c in eeg if c.sfreq < MIN_EEG_SFREQ]
    eeg = [c for c in eeg if c.sfreq >= MIN_EEG_SFREQ]
    if not eeg:
        raise NoEEGError(f"EEG channels sampled at {min(c.sfreq for c in slow):.3g} Hz; ephys needs at least "
                         f"{MIN_EEG_SFREQ:g} Hz", path)  # fmt: skip
    return get_montage(config.montage).pick(eeg, config.min_regions, path)


class _Block(NamedTuple):
    """Epochs ``[e0, e1)`` of segment ``seg`` (epoch indices within the segment)."""

    seg: int
    e0: int
    e1: int


def _exact_epochs(picked, config) -> bool:
    """Every picked rate has a whole number of samples per epoch that the resampling ratio divides,
    so a block boundary falls on the same instant at every rate, in and out."""
    for ch in picked:
        per = config.epoch_s * ch.sfreq
        if abs(per - round(per)) > 1e-9 or round(per) % resample_ratio(ch.sfreq, config.sfreq)[1]:
            return False
    return True


def _blocks(header, picked, config) -> list[_Block]:
    """The blocks of ``config.block_epochs`` epochs (20 min by default) of every segment, in time order.

    Worker memory is bounded by the block, not the recording; the filters see real signal across
    block edges (:func:`_filter_pad`), so blocks equal conditioning a segment whole up to float
    rounding.

    A recording whose rates do not give whole samples per epoch (256.02 Hz) is done one
    segment at a time, as before blocks existed; such rates come from odd headers, not from
    long monitoring files.
    """
    step = config.block_epochs if _exact_epochs(picked, config) else None
    out = []
    for k, seg in enumerate(header.segments):
        n = whole_epochs(seg.duration_s, config.epoch_s)
        for e0 in range(0, n, step or max(n, 1)):
            out.append(_Block(k, e0, min(n, e0 + (step or n))))
    return out


def _segment_samples(header, picked) -> list[list[tuple[int, int]]]:
    """Per segment, per picked channel: ``(first sample, n samples)`` at the channel's rate, segments
    concatenated as readers return them."""
    out, offsets = [], [0] * len(picked)
    for seg in header.segments:
        row = []
        for i, ch in enumerate(picked):
            n = int(round(seg.duration_s * ch.sfreq))
            row.append((offsets[i], n))
            offsets[i] += n
        out.append(row)
    return out


def _read_rows(reader, picked, rows: list[int], spans: dict[int, tuple[int, int]]) -> dict[int, np.ndarray]:
    """Samples ``spans[i] = (start, stop)`` of each picked channel ``i`` in ``rows``, one read per rate."""
    by_span: dict[tuple, list[int]] = {}
    for i in rows:
        by_span.setdefault((picked[i].sfreq, *spans[i]), []).append(i)
    out = {}
    for (_, a, b), group in by_span.items():
        for i, x in zip(group, reader.read(a, b, [picked[i].index for i in group])):
            out[i] = x
    return out


def _block_span(block: _Block, ch, seg: tuple[int, int], config, pad: int = 0) -> tuple[int, int, int]:
    """``(start, stop, lead)``: samples to read for a block, ``pad`` each side within the segment;
    ``lead`` samples precede the block's first epoch. A whole-segment block (odd rates) reads the segment."""
    first, n = seg
    per = config.epoch_s * ch.sfreq
    if abs(per - round(per)) > 1e-9:
        return first, first + n, 0
    lo, hi = block.e0 * round(per), block.e1 * round(per)
    a, b = max(0, lo - pad), min(n, hi + pad)
    if block.e1 == whole_epochs(n / ch.sfreq, config.epoch_s) and pad:
        b = n  # the last block filters up to the segment's end, as a whole-segment filter would
    return first + a, first + b, lo - a


def _filter_pad(ch, config) -> int:
    """Samples of real signal each side of a block so that its epochs equal a whole-segment
    conditioning: the FIR's half length plus the resampler's, rounded up to a multiple of the
    resampling ratio's denominator (so the block start maps to a whole output sample)."""
    up, down = resample_ratio(ch.sfreq, config.sfreq)
    half = (len(fir_kernel(float(ch.sfreq), config.l_freq or None, float(config.h_freq), float(config.line_freq))) - 1) // 2
    need = half + int(np.ceil(10 * max(up, down) / up)) + 1
    return -(-need // down) * down


def _condition_block(reader, picked, good: list[int], block: _Block, segs, config) -> np.ndarray:
    """Conditioned epochs of one block, ``(n_epochs, n_out_channels, n_samples)`` float16 µV.

    Only ``good`` channels (positions in ``picked``) are read and conditioned; in ``native`` the
    others stay zero (their mask bit is cleared), in ``regional8`` they are left out of the average
    reference and the regional means.
    """
    n_out = config.n_samples
    n_epochs = block.e1 - block.e0
    montage = get_montage(config.montage)
    n_rows = montage.n_rows(len(picked))
    if n_epochs == 0:
        return np.zeros((0, n_rows, n_out), np.float16)
    out = np.zeros((len(picked), n_epochs * n_out), np.float32)
    by_rate: dict[float, list[int]] = {}
    for i in good:
        by_rate.setdefault(picked[i].sfreq, []).append(i)
    for sf, rows in by_rate.items():
        ch0 = picked[rows[0]]
        a, b, lead = _block_span(block, ch0, segs[block.seg][rows[0]], config, _filter_pad(ch0, config))
        up, down = resample_ratio(sf, config.sfreq)
        skip = lead * up // down
        # A few channels at a time bounds the filter buffers.
        for k in range(0, len(rows), CONDITION_GROUP):
            group = rows[k : k + CONDITION_GROUP]
            x = reader.read(a, b, [picked[i].index for i in group])
            if not np.isfinite(x).all():
                np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            y = condition(x, sf, l_freq=config.l_freq, h_freq=config.h_freq, line_freq=config.line_freq,
                          sfreq_out=config.sfreq)[:, skip : skip + n_epochs * n_out]  # fmt: skip
            out[group, : y.shape[1]] = y  # a fractional input rate can leave the last sample short
    out = montage.combine(out, picked, good)
    np.clip(out, -F16_MAX, F16_MAX, out=out)
    return out.reshape(out.shape[0], n_epochs, n_out).transpose(1, 0, 2).astype(np.float16)


class _Source(NamedTuple):
    """What a block task needs to open the recording itself."""

    path: str
    fmt: str
    buffer_bytes: int
    sha256: str


class _Target(NamedTuple):
    """Where a block task writes its epochs: the spool ``.tmp`` file, the byte offset of row 0,
    the bytes of one row (one epoch)."""

    path: str
    offset: int
    row_bytes: int


@lru_cache(maxsize=1)
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread():
    """Context: BLAS matrix products (resampling, montage, QC band sums) on one thread. A
    multi-threaded BLAS splits sums differently, so without this a block would differ in float32
    rounding between a Dask worker (one BLAS thread by default) and a plain Python process."""
    return _blas().limit(limits=1, user_api="blas")


def _open_part(source: _Source, reader, sec: dict[str, float]):
    if reader is not None:
        return reader, False
    t0 = time.perf_counter()
    r = open_recording(source.path, source.fmt, buffer_bytes=source.buffer_bytes)
    sec["open"] = sec.get("open", 0.0) + time.perf_counter() - t0
    return r, True


def _qc_part(source: _Source, picked, segs, block: _Block, config: IngestConfig,
             reader=None) -> tuple[ChannelFeatures | None, dict[str, float]]:  # fmt: skip
    """Pass 1 over one block: its QC figures (``None`` without a whole epoch) and the seconds spent
    (``read``, ``qc``, ``open``).

    ``reader`` is the recording's open reader when run in the recording's own task; a block task
    opens the file from ``source``.
    """
    for action, arg in failpoints():
        prefix, _, e0 = arg.partition("@")
        if action == "crash-block" and prefix and source.sha256.startswith(prefix) and block.e0 == int(e0 or 0):
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: whoever reads that block dies (OOM, segfault)
    sec = {"read": 0.0, "qc": 0.0}
    reader, own = _open_part(source, reader, sec)
    try:
        t0 = time.perf_counter()
        spans = {i: _block_span(block, ch, segs[block.seg][i], config)[:2] for i, ch in enumerate(picked)}
        x = _read_rows(reader, picked, list(range(len(picked))), spans)
        t1 = time.perf_counter()
        with _one_blas_thread():
            f = segment_features(picked, [x[i] for i in range(len(picked))], (block.e1 - block.e0) * config.epoch_s, config)
        sec["read"], sec["qc"] = t1 - t0, time.perf_counter() - t1
    finally:
        if own:
            reader.close()
    return f, sec


def _condition_part(source: _Source, picked, good: list[int], segs, block: _Block, first_row: int,
                    target: _Target, config: IngestConfig, reader=None) -> tuple[np.ndarray, dict[str, float]]:  # fmt: skip
    """Pass 2 over one block: condition it and write its epochs as rows ``first_row...`` of the
    spool file ``target`` (then fsync). Returns ``(max |µV| per epoch, seconds)``.

    Raises
    ------
    OutputError
        When the spool file cannot be written (an error reading the recording is not one).
    """
    sec = {"condition": 0.0}
    reader, own = _open_part(source, reader, sec)
    t0 = time.perf_counter()
    try:
        with _one_blas_thread():
            ep = _condition_block(reader, picked, good, block, segs, config)
        _write_rows(target, first_row, ep)
    finally:
        if own:
            reader.close()
    sec["condition"] += time.perf_counter() - t0
    return np.abs(ep).max(axis=(1, 2)).astype(np.float32) if len(ep) else np.zeros(0, np.float32), sec


def _write_rows(target: _Target, first_row: int, rows: np.ndarray) -> None:
    """Write ``rows`` at rows ``first_row...`` of the spool file and fsync them.

    Raises
    ------
    OutputError
        On any OS error (a full disk names the bytes needed).
    """
    try:
        with open(target.path, "r+b") as f:
            f.seek(target.offset + first_row * target.row_bytes)
            f.write(np.ascontiguousarray(rows).tobytes())
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise _output_error(exc, Path(target.path).parent, len(rows) * target.row_bytes) from None


#: ``map_parts(fn, calls, reader) -> [fn(*call) for call in calls]``, in order.
PartMap = Callable[[Callable, list[tuple], object], list]


def _inline_parts(fn: Callable, calls: list[tuple], reader) -> list:
    """Run the parts here, one after the other, with the recording's own reader."""
    return [fn(*c, reader=reader) for c in calls]


class _DaskParts:
    """Run the parts as Dask tasks, one per block, and work on them in the recording's own task too.

    Nothing secedes from the worker's pool: a worker thread runs one task at a time, so a worker
    that dies (OOM, a segfault in a C library) takes only its running task with it, and worker
    memory stays one block per thread. The recording's task takes blocks from the end while
    the block tasks, on any worker, take them from the start; each block is done once, by
    whoever claims it first (:func:`_claim`). The recording's task then waits only for the blocks
    that other workers are already computing, so this cannot deadlock on a one-thread worker.
    """

    def __init__(self, spool_dir: str):
        self.spool_dir = spool_dir

    def __call__(self, fn: Callable, calls: list[tuple], reader) -> list:
        if len(calls) < 2:
            return _inline_parts(fn, calls, reader)
        import uuid

        from distributed import KilledWorker, get_client

        client = get_client()
        name = fn.__name__.strip("_").replace("_", "-")
        tag = f"{name}-{calls[0][0].sha256[:16]}-{uuid.uuid4().hex[:8]}"
        claims = Path(self.spool_dir) / f"{tag}.claims"
        try:
            claims.mkdir()
        except OSError as exc:
            raise _output_error(exc, claims.parent, 0) from None
        claim = [claims / str(k) for k in range(len(calls))]
        futures = [client.submit(_claimed_part, fn, claim[k], c, key=f"{tag}-{k}", priority=BLOCK_PRIORITY - k)
                   for k, c in enumerate(calls)]  # fmt: skip
        out: list = [None] * len(calls)
        try:
            mine = set()
            for k in reversed(range(len(calls))):
                if _claim(claim[k], "recording"):
                    mine.add(k)
                    out[k] = fn(*calls[k], reader=reader)
            for k, f in enumerate(futures):
                if k not in mine:
                    try:
                        out[k] = f.result()
                    except KilledWorker:
                        # Dask gave up on the block task: its workers died, in this block or as bystanders of
                        # another task's crash (Dask blames every task queued on a dying worker). Do the block
                        # here: a block that really kills its reader then fails this recording's own task
                        # (``worker_crash`` from the driver), and a bystander's recording is not lost.
                        out[k] = fn(*calls[k], reader=reader)
            return out
        finally:
            for f in futures:
                f.release()  # a block task already running goes on; one that starts later finds no folder
            done = claims.with_name(claims.name + ".done")
            try:
                os.replace(claims, done)  # atomic: no claim can be made after this, not even by a late block task
                shutil.rmtree(done, ignore_errors=True)
            except OSError:
                pass  # the next run's start removes what is left


def _claim(path: Path, who: str) -> bool:
    """Claim a block for ``who`` ("recording" or "task") with an ``O_CREAT | O_EXCL`` file.

    A block task whose earlier attempt claimed the block (then its worker died) claims it again;
    the recording's task never takes a block a task has claimed, it waits for that task. Once the
    recording's task is done its claims folder is gone, and a block task starting that late
    claims nothing.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileNotFoundError:
        return False
    except FileExistsError:
        try:
            return who == "task" and path.read_text() == "task"
        except OSError:
            return False
    except OSError as exc:
        raise _output_error(exc, path.parent, 0) from None
    try:
        os.write(fd, who.encode())
    finally:
        os.close(fd)
    return True


def _claimed_part(fn: Callable, claim: Path, call: tuple):
    """A block task: ``fn(*call)`` unless the block is taken or the recording is done (then ``None``)."""
    return fn(*call) if _claim(claim, "task") else None


def _usable_layout(picked, bad, names, config, path):
    """Output names and mask once bad channels are left out (the montage's :meth:`~Montage.layout`); rejects
    when too little is usable.

    Raises
    ------
    NoUsableChannelsError, InsufficientCoverageError
    """
    if len(bad) == len(picked):
        kinds = sorted(set(bad.values()))
        raise NoUsableChannelsError(f"no usable EEG channel: all {len(picked)} are bad ({', '.join(kinds)})", path)
    return get_montage(config.montage).layout(picked, bad, names, config.min_regions, path)


def _staging_channels(header, config):
    """The sleep-staging channel choice (read with the EEG in one pass), or ``None`` and why not."""
    if config.stager == "none":
        return None, None
    from ephys.annotate.staging import choose_channels
    from ephys.errors import NoStagingChannelError

    try:
        return choose_channels(header.channels), None
    except NoStagingChannelError as exc:
        return None, exc.reason


def _sleep_stages(config, header, starts: list[float], choice, note, data: dict[int, np.ndarray]):
    """Stage and probabilities per epoch (``None`` where unstaged), the backend and the channels used.

    ``choice``/``note`` come from :func:`_staging_channels`, ``data`` holds the chosen channels'
    signals. The stager sees the recording's segments joined end to end (as readers return
    them); an epoch whose start in that joined time is not on the stager's 30-s grid (a later
    segment of an EDF+D file not starting at a multiple of 30 s) stays unstaged.
    """
    if config.stager == "none":
        return [None] * len(starts), None, []
    from ephys.annotate.staging import EPOCH_S, STAGES, get_stager, stage_signals, unstaged

    stager = get_stager(config.stager)
    if choice is None:
        res = unstaged(int(header.duration_s // EPOCH_S), getattr(stager, "version", stager.name), note or "")
    else:
        res = stage_signals(choice, header.channels, data, stager)
    joined, offset = {}, 0.0
    for seg in header.segments:
        joined[seg.start_s] = offset
        offset += seg.duration_s
    seg_starts = sorted(joined)
    out = []
    for s in starts:
        seg0 = max((x for x in seg_starts if x <= s + 1e-6), default=0.0)
        j = (joined.get(seg0, 0.0) + s - seg0) / config.epoch_s
        k = int(round(j))
        if abs(j - k) > 1e-6 or not 0 <= k < len(res.stages) or res.stages[k] < 0:
            out.append(EpochStage())
        else:
            out.append(EpochStage(stage=STAGES[int(res.stages[k])], probs=[round(float(p), 4) for p in res.probs[k]]))
    return out, res.backend or f"{stager.name} {stager.version}", list(res.channels.values())


def _output_error(exc: OSError, folder: Path, nbytes: int) -> OutputError:
    reason = exc.strerror or str(exc)
    try:
        if shutil.disk_usage(folder).free < nbytes + (1 << 20):
            reason = f"No space left on device ({nbytes:,} bytes to write)"
    except OSError:
        pass
    return OutputError(f"cannot write spool file in {folder}: {reason}")


class _StagedArray:
    """A spool file (``.npy``, ``dtype``, ``shape``) written block by block along the first axis.

    A ``.tmp`` file takes the header and then each block in order; :meth:`commit` fsyncs it and
    renames it into place. Leaving the ``with`` block without :meth:`commit` deletes it.

    Raises
    ------
    OutputError
        On any OS error while writing (a full disk names the bytes needed).
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype=np.float16):
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self.tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self.row_bytes = int(np.prod(shape[1:])) * self.dtype.itemsize
        self.written = 0
        try:
            self._f = open(self.tmp, "wb")
            np.lib.format.write_array_header_1_0(self._f, {"descr": self.dtype.str, "fortran_order": False,
                                                           "shape": self.shape})  # fmt: skip
            self.offset = self._f.tell()
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            raise _output_error(exc, path.parent, self.nbytes) from None

    def reserve(self) -> _Target:
        """Size the file for every row and hand the rows to :func:`_condition_part` calls, which write
        them at their offsets (from any process that sees this file). Call instead of :meth:`write`."""
        try:
            self._f.truncate(self.offset + self.nbytes)
            self._f.flush()
        except OSError as exc:
            raise _output_error(exc, self.path.parent, self.nbytes) from None
        self.written = self.shape[0]
        return _Target(str(self.tmp), self.offset, self.row_bytes)

    def write(self, block: np.ndarray) -> None:
        if block.shape[1:] != self.shape[1:] or self.written + len(block) > self.shape[0]:
            raise ValueError(f"block of shape {block.shape} does not fit {self.shape} after {self.written} rows")
        try:
            self._f.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        except OSError as exc:
            raise _output_error(exc, self.path.parent, self.nbytes) from None
        self.written += len(block)

    def commit(self) -> None:
        if self.written != self.shape[0]:
            raise ValueError(f"{self.written} of {self.shape[0]} rows written")
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            raise _output_error(exc, self.path.parent, self.nbytes) from None

    def __enter__(self) -> _StagedArray:
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()
        self.tmp.unlink(missing_ok=True)


def _stage(path: Path, array: np.ndarray) -> None:
    """Write a whole array durably (tmp, fsync, rename); see :class:`_StagedArray`."""
    with _StagedArray(path, array.shape, array.dtype) as out:
        out.write(array)
        out.commit()


def failpoints() -> list[tuple[str, str]]:
    """``(action, argument)`` pairs of the test-only ``EPHYS_TEST_FAILPOINTS`` ("action:argument,...")."""
    items = os.environ.get("EPHYS_TEST_FAILPOINTS", "").split(",")
    return [(a, arg) for a, _, arg in (x.strip().partition(":") for x in items) if a]


def _failpoint(sha256: str, spool_dir: str) -> None:
    """Fault injection for tests: ``EPHYS_TEST_FAILPOINTS="hang:<sha prefix>,crash:<prefix>,crash-once:<prefix>"``.

    ``hang`` blocks like a reader stuck on a dead network share; ``crash`` kills
    the worker process as the kernel's OOM killer or a segfault in a C library
    would; ``crash-once`` does so only on the first attempt; ``crash-block:<prefix>@<epoch>`` kills the
    worker that reads the block starting at that epoch, in a block task or in the recording's own
    task (:func:`_qc_part`), as a damaged stretch of a file would. Unset in production.
    """
    for action, prefix in failpoints():
        if not prefix or not sha256.startswith(prefix):
            continue
        if action == "hang":
            threading.Event().wait()
        elif action == "crash" or action == "crash-once":
            marker = Path(spool_dir) / f"{sha256}.crashed"
            if action == "crash-once" and marker.exists():
                continue
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def bounded(fn: Callable, args: tuple, timeout_s: float | None, name: str):
    """``(True, fn(*args))``, or ``(False, None)`` when it has not returned in ``timeout_s`` seconds.

    Without a timeout ``fn`` runs inline. With one it runs in a daemon thread; a thread still
    stuck (an NFS read that never returns) is ended when the driver restarts the worker.
    An exception of ``fn`` is raised here.
    """
    if not timeout_s:
        return True, fn(*args)
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the task thread below
            box["error"] = exc

    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return False, None
    if "error" in box:
        raise box["error"]
    return True, box["result"]


def run_recording(
    path: str, fmt: str, sha256: str, file_bytes: int, config: IngestConfig, spool_dir: str, secret: bytes,
    buffer_bytes: int = 8 * 1024 * 1024, files: list[str] | None = None, fingerprints: list | None = None,
) -> RecordingResult:
    """The Dask task: :func:`process_recording` under ``config.task_timeout_s`` (:func:`bounded`), its
    blocks shared with block tasks on every worker (:class:`_DaskParts`).

    If it has not finished in time the task returns a ``failed`` result with code ``timeout``
    (the driver then restarts the worker, which ends the stuck thread).
    """
    args = (path, fmt, sha256, file_bytes, config, spool_dir, secret, buffer_bytes, _DaskParts(spool_dir),
            files, fingerprints)  # fmt: skip
    done, result = bounded(process_recording, args, config.task_timeout_s, f"ephys-recording-{sha256[:12]}")
    if not done:
        return RecordingResult(sha256=sha256, format=fmt, file_bytes=file_bytes, status=RecordingStatus.failed,
                               failure=Failure(stage="ingest", code="timeout",
                                               reason=f"processing took longer than --task-timeout {config.task_timeout_s:g} s"))  # fmt: skip
    return result


def process_recording(
    path: str, fmt: str, sha256: str, file_bytes: int, config: IngestConfig, spool_dir: str, secret: bytes,
    buffer_bytes: int = 8 * 1024 * 1024, map_parts: PartMap | None = None, files: list[str] | None = None,
    fingerprints: list | None = None,
) -> RecordingResult:
    """Run the per-recording chain; never raises for bad input (see module docstring).

    ``files`` and ``fingerprints`` (from :func:`ephys.ingest.hashing.hash_recording`): the
    recording's member files are checked unchanged since hashing before the first read and
    after the last (:func:`ephys.ingest.hashing.check_unchanged`); a changed one fails with
    ``changed_during_read``, so a stored hash is always that of the content read.

    ``map_parts`` runs the block passes (:data:`PartMap`); default: here, in order. The result's
    ``seconds`` are worker seconds per step (``open``, ``read``, ``qc``, ``condition``, ``sleep``,
    ``stage``), block tasks included.
    """
    map_parts = map_parts or _inline_parts
    work = dict.fromkeys(("open", "read", "qc", "condition", "sleep", "stage"), 0.0)
    t0 = time.perf_counter()
    base = dict(sha256=sha256, format=fmt, file_bytes=file_bytes)
    annotations: list[Annotation] = []
    n_scrubbed = 0
    info: dict = {}
    reader = None
    try:
        if file_bytes == 0:
            from ephys.errors import EmptyFileError

            raise EmptyFileError("file is empty (0 bytes)", path)
        _failpoint(sha256, spool_dir)
        if fingerprints is not None:
            check_unchanged(files or [path], fingerprints, path)
        reader = open_recording(path, fmt, buffer_bytes=buffer_bytes)
        h, patient = reader.header, reader.patient
        subject = pseudonym(secret, patient.patient_id, sha256, names=patient.names, birthdate=patient.birthdate)
        info = dict(
            format=h.format,
            subject=subject,
            age_years=age_years(patient.birthdate, patient.start),
            sex=normalise_sex(patient.sex),
            start_time=shifted_start(secret, subject, patient.start) if config.date_shift else None,
            duration_s=h.duration_s,
            n_channels=len(h.signal_channels),
            n_eeg_channels=sum(c.kind == "eeg" for c in h.channels),
            sfreq=max((c.sfreq for c in h.channels if c.kind == "eeg"), default=None),
            channels=[dict(name=c.name, kind=c.kind, sfreq=c.sfreq, unit=c.unit) for c in h.signal_channels],
            montage=config.montage,
        )
        if not h.signal_channels:
            annotations, n_scrubbed = _scrubbed(reader.annotations(), reader.patient, secret, config.taxonomy)
            raise NoSignalError("no signal channels (annotations only, e.g. a hypnogram file)", path)
        try:
            picked, names, mask = select_channels(h.channels, config, path)
        except RejectedError:
            annotations, n_scrubbed = _scrubbed(reader.annotations(), reader.patient, secret, config.taxonomy)
            raise
        work["open"] += time.perf_counter() - t0
        source = _Source(path, fmt, buffer_bytes, sha256)
        # Pass 1, block by block: QC figures of every picked channel. The sleep-staging channels
        # (one EEG, EOG, EMG, a mastoid) are read whole: the stagers see the night at once.
        staging, staging_note = _staging_channels(h, config)
        segs = _segment_samples(h, picked)
        blocks = _blocks(h, picked, config)
        parts_f = []
        for f, sec in map_parts(_qc_part, [(source, picked, segs, b, config) for b in blocks], reader):
            if f is not None:
                parts_f.append(f)
            _add(work, sec)
        t0 = time.perf_counter()
        staging_data = dict(zip(staging.indices, reader.read_channels(staging.indices))) if staging else {}
        annotations, n_scrubbed = _scrubbed(reader.annotations(), reader.patient, secret, config.taxonomy)
        work["read"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        if not parts_f:
            raise TooShortError(f"too short: 0 valid 30-s epochs (0 in all, {h.duration_s:.1f} s), "
                                f"--min-epochs is {config.min_epochs}", path)  # fmt: skip
        qc = assess(ChannelFeatures.concat(parts_f), config)
        bad, good, valid = qc.bad, qc.good, qc.valid
        names, mask = _usable_layout(picked, bad, names, config, path)
        if int(valid.sum()) < config.min_epochs:
            raise TooShortError(
                f"too short: {int(valid.sum())} valid 30-s epochs ({len(valid)} in all, {h.duration_s:.1f} s), "
                f"--min-epochs is {config.min_epochs}",
                path,
            )
        work["qc"] += time.perf_counter() - t0
        # Pass 2, block by block: condition the good channels and write the epochs at their rows of the spool file.
        starts = [h.segments[b.seg].start_s + k * config.epoch_s for b in blocks for k in range(b.e0, b.e1)]
        first_rows = np.cumsum([0] + [b.e1 - b.e0 for b in blocks])
        staged = Path(spool_dir) / f"{sha256}.npy"
        n_rows = get_montage(config.montage).n_rows(len(picked))
        with _StagedArray(staged, (len(starts), n_rows, config.n_samples)) as out:
            target = out.reserve()
            calls = [(source, picked, good, segs, b, int(first_rows[k]), target, config) for k, b in enumerate(blocks)]
            parts_max = []
            for m, sec in map_parts(_condition_part, calls, reader):
                parts_max.append(m)
                _add(work, sec)
            t0 = time.perf_counter()
            max_abs = np.concatenate(parts_max) if parts_max else np.zeros(0, np.float32)
            qcs = qc.epoch_records(max_abs)
            t1 = time.perf_counter()
            sleep, stager_name, staging_channels = _sleep_stages(config, h, starts, staging, staging_note, staging_data)
            del staging_data
            t2 = time.perf_counter()
            out.commit()
            work["condition"] += t1 - t0
            work["sleep"] += t2 - t1
        t0 = time.perf_counter()
        qc_staged = Path(spool_dir) / f"{sha256}.qc.npy"
        _stage(qc_staged, qc.figures())
        work["stage"] += time.perf_counter() - t0
        if fingerprints is not None:
            try:
                check_unchanged(files or [path], fingerprints, path)
            except ChangedDuringReadError:
                staged.unlink(missing_ok=True)
                qc_staged.unlink(missing_ok=True)
                raise
        return RecordingResult(
            **{**base, **info}, status=RecordingStatus.ok, channel_names=names, mask=mask,
            qc_channels=[c.name for c in picked], bad_channels={picked[i].name: r for i, r in sorted(bad.items())},
            qc_path=str(qc_staged),
            epochs=[EpochRecord(index=i, start_s=s, qc=q, sleep=z) for i, (s, q, z) in enumerate(zip(starts, qcs, sleep))],
            stager=stager_name, staging_channels=staging_channels,
            annotations=annotations, n_scrubbed=n_scrubbed, staged_path=str(staged), seconds=_rounded(work),
        )  # fmt: skip
    except OutputError:
        raise  # the output storage failed, not this recording: the driver stops the run
    except EphysError as exc:
        status = RecordingStatus.rejected if isinstance(exc, RejectedError) else RecordingStatus.failed
        return RecordingResult(**{**base, **info}, status=status, failure=Failure.from_exception(exc),
                               annotations=annotations, n_scrubbed=n_scrubbed, seconds=_rounded(work))  # fmt: skip
    except OSError as exc:
        return RecordingResult(**base, status=RecordingStatus.failed,
                               failure=Failure(stage="read", code="io_error", reason=f"I/O error: {exc.strerror or exc}"))  # fmt: skip
    except MemoryError:
        return RecordingResult(**base, status=RecordingStatus.failed,
                               failure=Failure(stage="read", code="out_of_memory", reason="ran out of memory"))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - a bug must not stop the run; the reason is recorded
        return RecordingResult(**base, status=RecordingStatus.failed, failure=Failure.from_exception(exc, stage="ingest"),
                               seconds=_rounded(work))  # fmt: skip
    finally:
        if reader is not None:
            reader.close()


def _scrubbed(annotations: list[Annotation], patient, secret: bytes, taxonomy: str | None = None) -> tuple[list[Annotation], int]:
    """Remove patient, technician and author names, identifiers and dates from annotation text,
    also where a name or code is split across two neighbouring annotations, then the names no
    header gives (relatives, staff: :class:`~ephys.ingest.names.NameDetector`); authors become
    pseudonyms. ``patient`` is the reader's :class:`PatientInfo`."""
    authors = sorted({a.author for a in annotations if a.author})
    names = patient.names + authors
    ids = [patient.patient_id, *patient.ids]
    order = sorted(range(len(annotations)), key=lambda i: annotations[i].onset_s)
    joined, total = scrub_split([annotations[i].text for i in order], names, ids)
    texts = dict(zip(order, joined))
    detector = name_detector() if any(a.text.strip() for a in annotations) else None
    out = []
    for i, a in enumerate(annotations):
        text, n = scrub_text(texts[i], names, ids)
        text, k = detector.scrub(text) if detector else (text, 0)
        total += n + k
        update = {"text": text} if text != a.text else {}
        if a.author:
            update["author"] = author_pseudonym(secret, a.author)
        out.append(a.model_copy(update=update) if update else a)
    return label_annotations(out, taxonomy), total


@lru_cache(maxsize=1)
def name_detector() -> NameDetector:
    """The name detector of this process, with every keyword and label of the annotation taxonomy
    protected (built once; the first call reads the cached name table, see :func:`build_table`)."""
    tax = load_taxonomy()
    return NameDetector(protected=[w for s in tax.subcategories for w in (*s.keywords, s.label)])


def _add(work: dict[str, float], sec: dict[str, float]) -> None:
    for k, v in sec.items():
        work[k] = work.get(k, 0.0) + v


def _rounded(work: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in work.items()}
