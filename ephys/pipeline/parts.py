"""Parts: the two passes over a block (QC figures, then conditioning into the spool file) as callables that
run here or as Dask block tasks shared between workers (:class:`DaskParts`)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ephys.ingest.readers import open_recording
from ephys.pipeline.blocks import Block, block_span, condition_block, one_blas_thread, read_rows
from ephys.pipeline.failpoints import block_failpoint
from ephys.pipeline.spool import Target, spool_error, write_rows
from ephys.qc.features import ChannelFeatures, segment_features
from ephys.schemas import IngestConfig


#: Dask priority of block tasks: above every recording task (whose priority follows the packing order), so
#: workers finish the recordings already open before they open new ones.
BLOCK_PRIORITY = 1 << 40


class Source(NamedTuple):
    """What a block task needs to open the recording itself."""

    path: str
    fmt: str
    buffer_bytes: int
    sha256: str


def open_part(source: Source, reader, sec: dict[str, float]):
    if reader is not None:
        return reader, False
    t0 = time.perf_counter()
    r = open_recording(source.path, source.fmt, buffer_bytes=source.buffer_bytes)
    sec["open"] = sec.get("open", 0.0) + time.perf_counter() - t0
    return r, True


def qc_part(source: Source, picked, segs, block: Block, config: IngestConfig,
             reader=None) -> tuple[ChannelFeatures | None, dict[str, float]]:
    """Pass 1 over one block: its QC figures (``None`` without a whole epoch) and the seconds spent
    (``read``, ``qc``, ``open``).

    ``reader`` is the recording's open reader when run in the recording's own task; a block task
    opens the file from ``source``.
    """
    block_failpoint(source.sha256, block.e0)
    sec = {"read": 0.0, "qc": 0.0}
    reader, own = open_part(source, reader, sec)
    try:
        t0 = time.perf_counter()
        spans = {i: block_span(block, ch, segs[block.seg][i], config)[:2] for i, ch in enumerate(picked)}
        x = read_rows(reader, picked, list(range(len(picked))), spans)
        t1 = time.perf_counter()
        with one_blas_thread():
            f = segment_features(picked, [x[i] for i in range(len(picked))], (block.e1 - block.e0) * config.epoch_s, config)
        sec["read"], sec["qc"] = t1 - t0, time.perf_counter() - t1
    finally:
        if own:
            reader.close()
    return f, sec


def condition_part(source: Source, picked, good: list[int], segs, block: Block, first_row: int,
                    target: Target, config: IngestConfig, reader=None) -> tuple[np.ndarray, dict[str, float]]:
    """Pass 2 over one block: condition it and write its epochs as rows ``first_row...`` of the
    spool file ``target`` (then fsync). Returns ``(max |µV| per epoch, seconds)``.

    Raises
    ------
    OutputError
        When the spool file cannot be written (an error reading the recording is not one).
    """
    sec = {"condition": 0.0}
    reader, own = open_part(source, reader, sec)
    t0 = time.perf_counter()
    try:
        with one_blas_thread():
            ep = condition_block(reader, picked, good, block, segs, config)
        write_rows(target, first_row, ep)
    finally:
        if own:
            reader.close()
    sec["condition"] += time.perf_counter() - t0
    return np.abs(ep).max(axis=(1, 2)).astype(np.float32) if len(ep) else np.zeros(0, np.float32), sec


#: ``map_parts(fn, calls, reader) -> [fn(*call) for call in calls]``, in order.
PartMap = Callable[[Callable, list[tuple], object], list]


def inline_parts(fn: Callable, calls: list[tuple], reader) -> list:
    """Run the parts here, one after the other, with the recording's own reader."""
    return [fn(*c, reader=reader) for c in calls]


class DaskParts:
    """Run the parts as Dask tasks, one per block, and work on them in the recording's own task too.

    Nothing secedes from the worker's pool: a worker thread runs one task at a time, so a worker
    that dies (OOM, a segfault in a C library) takes only its running task with it, and worker
    memory stays one block per thread. The recording's task takes blocks from the end while
    the block tasks, on any worker, take them from the start; each block is done once, by
    whoever claims it first (:func:`take_claim`). The recording's task then waits only for the blocks
    that other workers are already computing, so this cannot deadlock on a one-thread worker.
    """

    def __init__(self, spool_dir: str):
        self.spool_dir = spool_dir

    def __call__(self, fn: Callable, calls: list[tuple], reader) -> list:
        if len(calls) < 2:
            return inline_parts(fn, calls, reader)
        import uuid

        from distributed import KilledWorker, get_client

        client = get_client()
        name = fn.__name__.strip("_").replace("_", "-")
        tag = f"{name}-{calls[0][0].sha256[:16]}-{uuid.uuid4().hex[:8]}"
        claims = Path(self.spool_dir) / f"{tag}.claims"
        try:
            claims.mkdir()
        except OSError as exc:
            raise spool_error(exc, claims.parent, 0) from None
        claim = [claims / str(k) for k in range(len(calls))]
        futures = [client.submit(claimed_part, fn, claim[k], c, key=f"{tag}-{k}", priority=BLOCK_PRIORITY - k)
                   for k, c in enumerate(calls)]
        out: list = [None] * len(calls)
        try:
            mine = set()
            for k in reversed(range(len(calls))):
                if take_claim(claim[k], "recording"):
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


def take_claim(path: Path, who: str) -> bool:
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
        raise spool_error(exc, path.parent, 0) from None
    try:
        os.write(fd, who.encode())
    finally:
        os.close(fd)
    return True


def claimed_part(fn: Callable, claim: Path, call: tuple):
    """A block task: ``fn(*call)`` unless the block is taken or the recording is done (then ``None``)."""
    return fn(*call) if take_claim(claim, "task") else None
