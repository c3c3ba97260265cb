"""``ephys export edf|bids``: a manifest's curated, de-identified recordings and epochs in the field's formats."""

from __future__ import annotations

from pathlib import Path

import typer

from ephys.cli import export_app
from ephys.cli.common import fail
from ephys.errors import EphysError


@export_app.command("edf")
def edf(
    manifest: Path = typer.Option(..., "--manifest", help="manifest file"),
    out: Path = typer.Option(..., "--out", "-o", help="folder to create for the EDF+ files (must not exist)"),
) -> None:
    """Write the manifest's epochs as EDF+C files, one per recording and run of consecutive epochs, with their
    annotations and taxonomy labels; physical ranges from the data (nothing clips). No identity in them."""
    from ephys.export.edf import export_edf
    from ephys.progress import setup_logging

    setup_logging()
    try:
        r = export_edf(manifest, out, progress=True)
    except EphysError as exc:
        fail(str(exc))
    typer.echo(f"wrote {len(r['files'])} EDF+ files ({r['epochs']} epochs of {r['recordings']} recordings, "
               f"{r['annotations']} annotations) to {r['out']}")


@export_app.command("bids")
def bids(
    manifest: Path = typer.Option(..., "--manifest", help="manifest file"),
    archive: Path = typer.Option(..., "--archive", help="the archive folder the recordings were ingested from"),
    out: Path = typer.Option(..., "--out", "-o", help="BIDS root to create (must not exist)"),
    catalog: str = typer.Option(..., "--catalog", help="catalog URL of the ingest (sqlite:///OUT/catalog.sqlite)"),
    task: str = typer.Option("clinical", "--task", help="BIDS task label"),
    taxonomy: Path | None = typer.Option(None, "--taxonomy", help="the taxonomy YAML the catalog was labelled with "
                                         "(its HED-SCORE references) [default: the packaged one]"),
) -> None:
    """Write the manifest's recordings as a BIDS EEG dataset (mne-bids, EDF): native signals de-identified as
    ephys de-identifies, events with taxonomy labels and HED-SCORE tags, channels with QC status, participants
    with age and sex only. Needs ``pip install 'ephys[bids]'``."""
    from ephys.export.bids import export_bids
    from ephys.progress import setup_logging

    setup_logging()
    try:
        r = export_bids(manifest, archive, out, catalog=catalog, task=task, progress=True, taxonomy=taxonomy)
    except EphysError as exc:
        fail(str(exc))
    typer.echo(f"wrote a BIDS dataset of {r['recordings']} recordings of {r['subjects']} subjects to {r['out']}: "
               f"{r['events']} events ({r['hed_tagged']} with HED), {r['bad_channels']} bad channels marked, "
               f"{r['channels_left_out']} channels at another rate left out")
