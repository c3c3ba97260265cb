"""Progress of an ingest: the callbacks :func:`ephys.pipeline.run.ingest` calls, and two displays.

Kept free of heavy imports (no NumPy, Dask or MNE) so the command line loads it at once.
Recordings are named by SHA-256 prefix, never by path, unless the caller asks for paths
on an interactive terminal (``ephys ingest --show-paths``): archive paths hold patient names.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ephys.schemas import RecordingResult

log = logging.getLogger("ephys")


class Reporter:
    """Progress callbacks; the CLI plugs in a rich display or log lines.

    ``name`` is the recording's SHA-256 prefix (12 hex digits), or its printable path with
    ``ingest(..., show_paths=True)``."""

    def start(self, total: int) -> None: ...
    def skipped(self, name: str, why: str) -> None: ...
    def finished(self, name: str, result: RecordingResult) -> None: ...
    def shard(self, name: str, n_samples: int) -> None: ...
    def stop(self) -> None: ...


class LogReporter(Reporter):
    """Plain log lines (when stderr is not a terminal): recordings named by SHA-256 prefix, never by path
    (``ephys catalog locate PREFIX --archive DIR`` finds the file)."""

    def __init__(self):
        self.total = self.n = 0

    def start(self, total):
        self.total = total
        log.info("ingesting %d recordings", total)

    def skipped(self, name, why):
        self.n += 1
        log.info("[%d/%d] skipped  %s (%s)", self.n, self.total, name, why)

    def finished(self, name, r: RecordingResult):
        self.n += 1
        if r.failure:
            log.info("[%d/%d] %-8s %s: %s: %s", self.n, self.total, r.status.value, name, r.failure.code, r.failure.reason)
        else:
            log.info("[%d/%d] ok       %s: %d epochs", self.n, self.total, name, r.n_epochs)

    def shard(self, name, n_samples):
        log.info("shard %s written (%d samples)", name, n_samples)


class RichReporter(Reporter):
    """A rich progress bar with files done/failed/skipped, EEG-hours and throughput."""

    def __init__(self):
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._time = time.perf_counter
        self.t0 = self._time()
        self.counts = dict(ok=0, rejected=0, failed=0, skipped=0)
        self.hours = 0.0
        self.progress = Progress(
            TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(), transient=False,
        )  # fmt: skip
        self.task = None

    def _stats(self):
        wall_h = max(self._time() - self.t0, 1e-6) / 3600
        c = self.counts
        return (f"ok {c['ok']} rejected {c['rejected']} failed {c['failed']} skipped {c['skipped']} | "
                f"{self.hours:.2f} EEG-h, {self.hours / wall_h:,.0f} EEG-h/h")  # fmt: skip

    def start(self, total):
        self.progress.start()
        self.task = self.progress.add_task("ingest", total=total, stats=self._stats())

    def skipped(self, name, why):
        self.counts["skipped"] += 1
        self.progress.update(self.task, advance=1, stats=self._stats())

    def finished(self, name, r):
        self.counts[r.status.value] += 1
        if r.status.value == "ok":
            self.hours += (r.duration_s or 0) / 3600
        self.progress.update(self.task, advance=1, stats=self._stats())

    def stop(self):
        self.progress.stop()
