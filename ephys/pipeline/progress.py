"""Progress of an ingest: the callbacks :func:`ephys.pipeline.run.ingest` calls, two displays, and the
summary printed at the end (:func:`summary_lines`, :func:`summary_dict`).

Kept free of heavy imports (no NumPy, Dask or MNE) so the command line loads it at once.
Recordings are named by SHA-256 prefix, never by path, unless the caller asks for paths
on an interactive terminal (``ephys ingest --show-paths``): archive paths hold patient names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ephys.pipeline.run import IngestSummary
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
        )
        self.task = None

    def _stats(self):
        wall_h = max(self._time() - self.t0, 1e-6) / 3600
        c = self.counts
        return (f"ok {c['ok']} rejected {c['rejected']} failed {c['failed']} skipped {c['skipped']} | "
                f"{self.hours:.2f} EEG-h, {self.hours / wall_h:,.0f} EEG-h/h")

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


def summary_dict(s: IngestSummary) -> dict:
    """The counts of an ingest as ``ephys ingest --json`` prints them (numbers, shard folder, catalog URL)."""
    return dict(
        run=s.run_id, recordings=s.n_discovered, ok=s.n_ok, rejected=s.n_rejected, failed=s.n_failed,
        skipped=s.n_skipped, duplicates=s.n_duplicates, ignored_files=s.n_ignored, special_files=s.n_special,
        unreadable_folders=s.n_unreadable_folders, epochs_written=s.n_epochs,
        shards_written=s.n_shards, eeg_hours=round(s.eeg_hours, 4), wall_s=round(s.wall_s, 2),
        sidecars=s.sidecars.n_sidecars, sidecar_entries=s.sidecars.n_entries, sidecar_attached=s.sidecars.n_attached,
        sidecar_problems=len(s.sidecars.problems),
        eeg_hours_per_hour=round(s.eeg_hours / max(s.wall_s, 1e-9) * 3600, 1),
        shards=str((Path(s.out) / "shards").resolve()), catalog=s.catalog, dashboard=s.dashboard,
    )


def summary_lines(s: IngestSummary, archive: str | Path, *, named_by_path: bool = False) -> list[str]:
    """The lines ``ephys ingest`` ends with: counts, every recording not ok with its code and reason (named
    by SHA-256 prefix unless ``named_by_path``), epochs, shards and catalog. ``archive`` is named only when
    nothing was found in it (the operator's own argument)."""
    out = []
    if s.n_discovered == 0:
        out.append(f"no recordings found in {archive} ({s.n_ignored} other files ignored)")
    out.append(
        f"run {s.run_id}: {s.n_discovered} recordings: {s.n_ok} ok, {s.n_rejected} rejected, {s.n_failed} failed, "
        f"{s.n_skipped} skipped (done before), {s.n_duplicates} duplicates; {s.n_ignored} other files ignored"
        + (f"; {s.n_special} special files (FIFO, socket, device)" if s.n_special else "")
        + (f"; {s.n_unreadable_folders} folders could not be listed" if s.n_unreadable_folders else "")
    )
    out += [f"  {code:<22} {name}: {reason}" for name, code, reason in s.outcomes]
    if s.outcomes and not named_by_path:
        out.append("  (recordings named by SHA-256 prefix; `ephys catalog locate PREFIX --out OUT --archive ARCHIVE` "
                   "prints the file on a terminal)")
    sc = s.sidecars
    if sc.n_sidecars:
        out.append(f"annotation sidecars: {sc.n_sidecars} ({sc.n_entries} entries: {sc.n_attached} attached to "
                   f"{sc.n_recordings} recordings, {sc.n_clipped} of them clipped)")
        grouped: dict[tuple[str, str], list[int]] = {}
        for name, number, why in sc.problems:
            grouped.setdefault((name, why), []).append(number)
        for (name, why), numbers in grouped.items():
            listed = ", ".join(map(str, numbers[:8])) + (f" and {len(numbers) - 8} more" if len(numbers) > 8 else "")
            out.append(f"  sidecar {name} entr{'y' if len(numbers) == 1 else 'ies'} {listed}: {why}")
    d = summary_dict(s)
    out.append(f"{s.n_epochs} epochs in {s.n_shards} new shards; {s.eeg_hours:.2f} EEG-hours in {s.wall_s:.1f} s "
               f"({d['eeg_hours_per_hour']:,} EEG-h per hour)")
    out.append(f"shards:  {d['shards']}")
    out.append(f"catalog: {s.catalog}")
    return out
