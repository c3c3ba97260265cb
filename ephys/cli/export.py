"""``ephys export edf``: a manifest's curated, de-identified, conditioned epochs in the field's formats."""

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
