"""``ephys ingest`` and ``ephys demo-archive``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ephys.cli import app
from ephys.cli.common import fail
from ephys.errors import EphysError
from ephys.pipeline.progress import LogReporter, RichReporter

log = logging.getLogger("ephys")


def _setup_logging() -> None:
    """Log lines of ephys (only) to stderr; Dask's own INFO chatter stays quiet."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    for noisy in ("distributed", "alembic", "bokeh", "tornado"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _cluster_options(items: list[str]) -> dict:
    """``KEY=VALUE`` pairs as a dict; a value that parses as JSON (numbers, lists, true) is taken so,
    anything else as text (``walltime=01:00:00``, ``memory=16GiB``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            fail(f"--cluster-option takes KEY=VALUE, not {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@app.command("ingest")
def ingest_cmd(
    archive: Path = typer.Argument(..., help="Folder of recordings (walked recursively) or one recording file."),
    out: Path = typer.Option(Path("ephys-out"), "--out", "-o", help="Output folder: shards/, hashlog.csv, catalog."),
    catalog: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the catalog [default: sqlite:///OUT/catalog.sqlite]."),
    scheduler: Optional[str] = typer.Option(None, help="Address of a running Dask scheduler [default: a local cluster]."),
    shards: Optional[str] = typer.Option(None, "--shards", help="Where shards go: a folder or an fsspec URL such as "
                                         "s3://bucket/corpus (needs its package, e.g. the 's3' extra) [default: OUT/shards]."),
    workers: Optional[int] = typer.Option(None, min=1, help="Worker processes: of the local cluster [default: CPU "
                                          "count], or the most at a time with --cluster slurm [default: 16]."),
    cluster: str = typer.Option("local", help="Without --scheduler, where the workers run: local (this machine) or "
                                "slurm (Dask workers submitted as Slurm jobs by dask-jobqueue, as the work needs them)."),
    cluster_option: Optional[List[str]] = typer.Option(None, "--cluster-option", metavar="KEY=VALUE",
                                                       help="A dask_jobqueue.SLURMCluster setting, repeatable: queue=gpu, "
                                                       "account=neuro, walltime=08:00:00, memory=16GiB, cores=4 (worker "
                                                       "processes per job), job_extra_directives='[\"--exclusive\"]' "
                                                       "(JSON values are parsed) [default: cores=1, memory=4GiB, "
                                                       "walltime=24:00:00, or Dask's jobqueue.slurm config]."),
    montage: str = typer.Option("regional8", help="regional8 (19 electrodes -> 8 regions) or native (every EEG channel)."),
    min_epochs: int = typer.Option(10, min=0, help="Valid 30-s epochs a recording needs."),
    min_regions: int = typer.Option(6, min=1, max=8, help="regional8: regions that need an electrode."),
    line_freq: int = typer.Option(50, help="Mains frequency for the notch: 50 or 60 Hz."),
    shard_size: int = typer.Option(1000, min=1, help="Samples (epochs) per shard."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Process recordings that failed before again."),
    force: bool = typer.Option(False, "--force", help="Rebuild the output from scratch (deletes its shards and catalog rows)."),
    keep_paths: bool = typer.Option(False, "--keep-paths", help="Store archive-relative paths (they may hold identifiers)."),
    show_paths: bool = typer.Option(False, "--show-paths", help="Name recordings by path on the console, only when it is "
                                    "an interactive terminal [default: by SHA-256 prefix; `ephys catalog locate` finds the file]."),
    stager: str = typer.Option("none", help="Sleep staging per epoch: gssc (EPI-250k's; AGPL-3.0, extra 'gssc'), "
                               "yasa (BSD-3, extra 'staging') or none."),
    date_shift: bool = typer.Option(False, "--date-shift", help="Store recording starts shifted per subject by a keyed "
                                    "offset (time of day and intervals kept); without it no dates are stored."),
    task_timeout: Optional[float] = typer.Option(None, "--task-timeout", min=0.001, help="Seconds one recording may "
                                                 "take; a slower one is recorded as failed (timeout) and its worker restarted."),
    buffer_mib: int = typer.Option(8, min=1, help="Size of one buffered read, MiB."),
    block_epochs: int = typer.Option(40, min=1, help="Epochs processed at a time (40 = 20 min): bounds worker memory; "
                                     "a recording of several blocks is spread over the workers block by block."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Ingest an EEG archive: discover, hash, read, QC, condition, epoch, shard, catalog.

    Exit code 0 when the run completed (failed recordings are recorded, not fatal);
    2 when it could not run (no such archive, catalog or scheduler unreachable,
    settings differing from the existing output's).
    """
    if montage not in ("regional8", "native"):
        fail(f"--montage must be regional8 or native, not {montage!r}")
    if line_freq not in (50, 60):
        fail("--line-freq must be 50 or 60")
    if stager not in ("gssc", "yasa", "none"):
        fail(f"--stager must be gssc, yasa or none, not {stager!r}")
    options = _cluster_options(cluster_option or [])
    if options and cluster != "slurm":
        fail("--cluster-option applies to --cluster slurm")
    from ephys.pipeline.run import ingest  # NumPy, SciPy, MNE and Dask load here, after the options are checked
    from ephys.schemas import IngestConfig

    _setup_logging()
    config = IngestConfig(montage=montage, min_epochs=min_epochs, min_regions=min_regions, line_freq=line_freq,
                          shard_size=shard_size, keep_paths=keep_paths, date_shift=date_shift, stager=stager,
                          task_timeout_s=task_timeout, block_epochs=block_epochs)  # fmt: skip
    interactive = sys.stderr.isatty() and sys.stdout.isatty()
    if show_paths and not interactive:
        log.warning("--show-paths ignored: the console is not an interactive terminal (paths can hold patient names)")
    reporter = RichReporter() if sys.stderr.isatty() and not as_json else LogReporter()
    try:
        s = ingest(archive, out, config=config, catalog_url=catalog, scheduler=scheduler, workers=workers,
                   retry_failed=retry_failed, force=force, buffer_bytes=buffer_mib << 20, reporter=reporter,
                   shards_url=shards, show_paths=show_paths and interactive, cluster=cluster,
                   cluster_options=options)  # fmt: skip
    except EphysError as exc:
        fail(str(exc))
    summary = dict(
        run=s.run_id, recordings=s.n_discovered, ok=s.n_ok, rejected=s.n_rejected, failed=s.n_failed,
        skipped=s.n_skipped, duplicates=s.n_duplicates, ignored_files=s.n_ignored, special_files=s.n_special,
        unreadable_folders=s.n_unreadable_folders, epochs_written=s.n_epochs,
        shards_written=s.n_shards, eeg_hours=round(s.eeg_hours, 4), wall_s=round(s.wall_s, 2),
        eeg_hours_per_hour=round(s.eeg_hours / max(s.wall_s, 1e-9) * 3600, 1),
        shards=str((Path(s.out) / "shards").resolve()), catalog=s.catalog, dashboard=s.dashboard,
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    if s.n_discovered == 0:
        typer.echo(f"no recordings found in {archive} ({s.n_ignored} other files ignored)")
    typer.echo(
        f"run {s.run_id}: {s.n_discovered} recordings: {s.n_ok} ok, {s.n_rejected} rejected, {s.n_failed} failed, "
        f"{s.n_skipped} skipped (done before), {s.n_duplicates} duplicates; {s.n_ignored} other files ignored"
        + (f"; {s.n_special} special files (FIFO, socket, device)" if s.n_special else "")
        + (f"; {s.n_unreadable_folders} folders could not be listed" if s.n_unreadable_folders else "")
    )
    for name, code, reason in s.outcomes:
        typer.echo(f"  {code:<22} {name}: {reason}")
    if s.outcomes and not (show_paths and interactive):
        typer.echo("  (recordings named by SHA-256 prefix; `ephys catalog locate PREFIX --out OUT --archive ARCHIVE` "
                   "prints the file on a terminal)")
    typer.echo(f"{s.n_epochs} epochs in {s.n_shards} new shards; {s.eeg_hours:.2f} EEG-hours in {s.wall_s:.1f} s "
               f"({summary['eeg_hours_per_hour']:,} EEG-h per hour)")  # fmt: skip
    typer.echo(f"shards:  {summary['shards']}")
    typer.echo(f"catalog: {s.catalog}")


@app.command("demo-archive")
def demo_archive_cmd(
    folder: Path = typer.Argument(..., help="Folder to write the demo archive into."),
    recordings: int = typer.Option(3, min=1, help="Number of synthetic recordings."),
    minutes: float = typer.Option(6.0, min=0.5, help="Length of each recording, minutes."),
):
    """Write a small synthetic archive (EDF+, BDF+, one damaged file, one fake) to try ephys on."""
    from ephys.ingest.demo import write_demo_archive

    files = write_demo_archive(folder, n_recordings=recordings, minutes=minutes)
    typer.echo(f"wrote {len(files)} files to {folder}")


def _default_archive(out: Path) -> Path:
    """``../shared/data/real`` (the project's real recordings) when present, else a fresh demo archive."""
    shared = Path("..") / "shared" / "data" / "real"
    if shared.is_dir():
        return shared
    from ephys.ingest.demo import write_demo_archive

    demo = out.parent / f"{out.name}-demo-archive"
    if not demo.exists():
        write_demo_archive(demo)
        typer.echo(f"wrote a synthetic demo archive to {demo}")
    return demo


@app.command("quickstart")
def quickstart_cmd(
    out: Path = typer.Option(Path("ephys-out"), "--out", "-o", help="Output folder."),
    archive: Optional[Path] = typer.Option(None, help="Archive [default: ../shared/data/real, else a demo archive]."),
    workers: Optional[int] = typer.Option(None, min=1, help="Local cluster worker processes [default: CPU count]."),
):
    """Run the main job on embedded defaults, then print the catalog summary and where the shards are.

    Ingests ``../shared/data/real`` when that folder exists (otherwise a small
    synthetic archive written by ``ephys demo-archive``) with every default
    (regional8 montage, SQLite catalog, local Dask cluster). Running it again
    processes nothing new.
    """
    from ephys.catalog.queries import catalog_stats
    from ephys.cli.catalog import _print_stats

    archive = archive or _default_archive(out)
    typer.echo(f"ingesting {archive} into {out}")
    ingest_cmd(archive=archive, out=out, catalog=None, scheduler=None, shards=None, workers=workers, cluster="local",
               cluster_option=None, montage="regional8", min_epochs=10, min_regions=6, line_freq=50, shard_size=1000, retry_failed=False, force=False,
               keep_paths=False, show_paths=False, stager="none", date_shift=False, task_timeout=None, buffer_mib=8, block_epochs=40, as_json=False)  # fmt: skip
    _print_stats(catalog_stats(f"sqlite:///{out.resolve() / 'catalog.sqlite'}"))
    typer.echo(f"shards are in {(out / 'shards').resolve()}; try `ephys catalog query --out {out}` "
               f"or, for every EEG channel instead of 8 regions, `ephys ingest {archive} --out {out}-native --montage native`")  # fmt: skip
