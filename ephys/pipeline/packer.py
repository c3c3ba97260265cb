"""The packer: the driver's half of the pipeline. It takes finished recordings in a fixed order, cuts their spooled
epochs into WebDataset shards of ``config.shard_size`` samples (:func:`~ephys.shard.writer.write_shard`), commits
each shard with its epoch rows in one catalog transaction, then logs the recordings whose epochs are all committed
in the hash log and removes their spool files (resume and repair pick up exactly the epochs not yet committed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ephys.annotate.attach import epoch_annotations
from ephys.catalog.db import Catalog, epoch_row
from ephys.errors import OutputError
from ephys.pipeline.failpoints import driver_failpoint
from ephys.pipeline.hashlog import HashLog
from ephys.pipeline.progress import Reporter
from ephys.qc.record import QCFigures
from ephys.schemas import EpochMeta, IngestConfig, RecordingResult
from ephys.shard.writer import write_shard

#: Test hook: seconds to pause after each committed shard (``EPHYS_TEST_PACK_DELAY_S``), so tests can kill a run mid-way.
_PACK_DELAY_S = float(os.environ.get("EPHYS_TEST_PACK_DELAY_S", "0") or 0)


def _output_error(exc: OSError, where: Path | str) -> OutputError:
    return OutputError(
        f"cannot write to {where}: {exc.strerror or exc}; nothing committed is lost: "
        "free space (or fix the output) and run the same command again to continue"
    )


class Packer:
    """Packs staged epochs into shards in a fixed recording order."""

    def __init__(self, catalog: Catalog, out: Path, config: IngestConfig, run_id: int, hashlog: HashLog,
                 order: list[str], have: dict[str, set[int]], meta: dict[str, tuple[str, str | None]], reporter: Reporter,
                 shards: Path | None = None, shards_url: str | None = None):
        self.catalog, self.config, self.run_id, self.hashlog = catalog, config, run_id, hashlog
        # Remote shards are written in the spool folder, then uploaded (ephys.shard.store).
        self.folder = out / ".spool" if shards_url else shards or out / "shards"
        self.url = shards_url
        self.order = order
        self.pos = 0
        self.have = have  # sha -> epoch indices already in committed shards (resume, repair)
        self.meta = meta  # sha -> (path_hash, relpath)
        self.results: dict[str, RecordingResult | None] = {}
        self.buffer: list[tuple[np.ndarray, EpochMeta, dict]] = []
        self.packed: dict[str, int] = {}
        self.index = catalog.next_shard_index()
        self.reporter = reporter
        self.unfinished: list[RecordingResult] = []  # packed into the buffer, not all committed yet
        self.n_shards = 0
        self.n_epochs = 0

    def add(self, sha: str, result: RecordingResult | None) -> None:
        """``result`` is ``None`` for recordings that produce no epochs (failed, rejected)."""
        self.results[sha] = result
        while self.pos < len(self.order) and self.order[self.pos] in self.results:
            self._pack(self.order[self.pos])
            self.pos += 1

    def _pack(self, sha: str) -> None:
        r = self.results.pop(sha)
        if r is None:
            return
        data = np.load(r.spool_path, allow_pickle=False)
        figures = np.load(r.qc_path, allow_pickle=False) if r.qc_path else None  # QCFigures
        have = self.have.get(sha, set())
        self.packed.setdefault(sha, len(have))
        for e in r.epochs:
            if e.index in have:
                continue
            key = f"{sha[:16]}_{e.index:06d}"
            meta = EpochMeta(
                key=key, recording=sha, subject=r.subject or "", epoch_index=e.index, start_s=e.start_s,
                sfreq=self.config.sfreq, n_samples=self.config.n_samples, montage=r.montage or self.config.montage,
                channel_names=r.channel_names, mask=r.mask, qc=e.qc, qc_channels=r.qc_channels,
                bad_channels=r.bad_channels, sleep=e.sleep, **QCFigures.epoch_fields(figures, e.index),
                annotations=epoch_annotations(r.annotations, e.start_s, self.config.epoch_s),
            )
            self.buffer.append((data[e.index], meta, epoch_row(r, e, key)))
            if len(self.buffer) >= self.config.shard_size:
                self.flush()
        self.unfinished.append(r)
        self._finish_done()

    def _finish_done(self) -> None:
        """Log recordings whose epochs are all in committed shards; drop their spool files."""
        keep = []
        for r in self.unfinished:
            if self.packed.get(r.sha256, 0) >= r.n_epochs:
                ph, rp = self.meta[r.sha256]
                self.hashlog.append(r.sha256, "ok", None, r.n_epochs, ph, rp)
                Path(r.spool_path).unlink(missing_ok=True)
                if r.qc_path:
                    Path(r.qc_path).unlink(missing_ok=True)
                self.packed.pop(r.sha256, None)
            else:
                keep.append(r)
        self.unfinished = keep

    def flush(self) -> None:
        if not self.buffer:
            return
        try:
            info = write_shard(self.folder, self.index, [(x, m) for x, m, _ in self.buffer], url=self.url)
        except OSError as exc:
            raise _output_error(exc, self.url or self.folder) from None
        driver_failpoint("renamed", info.index)
        progress: dict[str, int] = {}
        for _, m, _row in self.buffer:
            progress[m.recording] = self.packed[m.recording] = self.packed[m.recording] + 1
        self.catalog.commit_shard(info, run_id=self.run_id, epochs=[row for _, _, row in self.buffer], packed=progress)
        driver_failpoint("committed", info.index)
        self.reporter.shard(info.name, info.n_samples)
        if _PACK_DELAY_S:
            time.sleep(_PACK_DELAY_S)
        self.n_shards += 1
        self.n_epochs += info.n_samples
        self.index += 1
        self.buffer = []
        self._finish_done()
