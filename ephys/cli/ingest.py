"""``ephys ingest`` and ``ephys demo-archive``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

from ephys.cli import app
from ephys.cli.common import fail
from ephys.errors import EphysError
from ephys.pipeline.progress import LogReporter, RichReporter, summary_dict, summary_lines
from ephys.progress import setup_logging

log = logging.getLogger("ephys")


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
    catalog: str | None = typer.Option(None, help="SQLAlchemy URL of the catalog [default: sqlite:///OUT/catalog.sqlite]."),
    scheduler: str | None = typer.Option(None, help="Address of a running Dask scheduler [default: a local cluster]."),
    shards: str | None = typer.Option(None, "--shards", help="Where shards go: a folder or an fsspec URL such as "
                                         "s3://bucket/corpus (needs its package, e.g. the 's3' extra) [default: OUT/shards]."),
    workers: int | None = typer.Option(None, min=1, help="Worker processes: of the local cluster [default: CPU "
                                          "count], or the most at a time with --cluster slurm [default: 16]."),
    cluster: str = typer.Option("local", help="Without --scheduler, where the workers run: local (this machine) or "
                                "slurm (Dask workers submitted as Slurm jobs by dask-jobqueue, as the work needs them)."),
    cluster_option: list[str] | None = typer.Option(None, "--cluster-option", metavar="KEY=VALUE",
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
                               "yasa (BSD-3, extra 'staging'), ensemble (both, probabilities averaged; recommended where both are "
                               "installed) or none."),
    date_shift: bool = typer.Option(False, "--date-shift", help="Store recording starts shifted per subject by a keyed "
                                    "offset (time of day and intervals kept); without it no dates are stored."),
    task_timeout: float | None = typer.Option(None, "--task-timeout", min=0.001, help="Seconds one recording may "
                                                 "take; a slower one is recorded as failed (timeout) and its worker restarted."),
    taxonomy: Path | None = typer.Option(None, "--taxonomy", help="Annotation taxonomy YAML [default: the packaged "
                                            "one]; `ephys annotations apply` writes one from reviewed cluster proposals."),
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
    if stager not in ("gssc", "yasa", "ensemble", "none"):
        fail(f"--stager must be gssc, yasa, ensemble or none, not {stager!r}")
    options = _cluster_options(cluster_option or [])
    if options and cluster != "slurm":
        fail("--cluster-option applies to --cluster slurm")
    from ephys.pipeline.run import ingest  # NumPy, SciPy, MNE and Dask load here, after the options are checked
    from ephys.schemas import IngestConfig

    setup_logging()
    config = IngestConfig(montage=montage, min_epochs=min_epochs, min_regions=min_regions, line_freq=line_freq,
                          shard_size=shard_size, keep_paths=keep_paths, date_shift=date_shift, stager=stager,
                          task_timeout_s=task_timeout, block_epochs=block_epochs,
                          taxonomy=str(taxonomy) if taxonomy else None)
    interactive = sys.stderr.isatty() and sys.stdout.isatty()
    if show_paths and not interactive:
        log.warning("--show-paths ignored: the console is not an interactive terminal (paths can hold patient names)")
    reporter = RichReporter() if sys.stderr.isatty() and not as_json else LogReporter()
    try:
        s = ingest(archive, out, config=config, catalog_url=catalog, scheduler=scheduler, workers=workers,
                   retry_failed=retry_failed, force=force, buffer_bytes=buffer_mib << 20, reporter=reporter,
                   shards_url=shards, show_paths=show_paths and interactive, cluster=cluster,
                   cluster_options=options)
    except EphysError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(summary_dict(s), indent=2))
        return
    for line in summary_lines(s, archive, named_by_path=show_paths and interactive):
        typer.echo(line)


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


@app.command("quickstart")
def quickstart_cmd(
    out: Path = typer.Option(Path("ephys-quickstart"), "--out", "-o", help="Folder of everything it writes."),
    real: Path | None = typer.Option(None, "--real", help="Real recordings to tile the demo archive from and ingest "
                                        "[default: shared/data/real beside the source checkout, or ../shared/data/real]."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Use the synthetic demo archive instead of real EEG."),
    workers: int | None = typer.Option(None, min=1, help="Local cluster worker processes [default: CPU count]."),
    steps: int = typer.Option(40, min=1, help="Training steps of the cpu-tiny model."),
):
    """Walk the whole product on a small archive: build it, ingest, catalog, manifest, pretrain, probe, report.

    The archive: six clinical-like recordings tiled from real EEG (EDF+, BDF+, Micromed .TRC, Nicolet .e,
    German annotations) beside a copy of the project's real recordings (rejected and damaged ones included).
    About a minute on two cores; running it again reuses what is there. Prints where each artefact is and
    the commands to try next.
    """
    from ephys.quickstart import quickstart

    if real is not None and not real.is_dir():
        fail(f"--real {real}: not a folder")
    setup_logging(logging.WARNING)  # the walk prints its own lines; the ingest's per-recording lines stay quiet
    reporter = RichReporter() if sys.stderr.isatty() else None
    try:
        quickstart(out, real=real, use_real=not synthetic, workers=workers, steps=steps, say=typer.echo,
                   reporter=reporter)
    except (ValueError, EphysError) as exc:
        fail(str(exc))
