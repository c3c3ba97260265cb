"""``ephys audit``: scan an ingest's output for the archive's patient identity."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ephys.cli import app


@app.command("audit")
def audit_cmd(
    output: Path = typer.Argument(..., help="The ingest output folder (shards, catalog, hash log, ...)."),
    archive: Path = typer.Option(..., "--archive", help="The archive it was built from."),
    also: list[Path] | None = typer.Option(None, "--also", help="More files or folders to scan: manifests, Slurm logs."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Read every identity field of every recording in ARCHIVE (names, IDs, birth and start dates,
    file and folder names) and search every byte of OUTPUT for them in the encodings headers use.

    Prints counts per kind of field and kind of file, never the tokens. Exit code 0 when nothing
    is found, 1 on any hit, 2 when the audit could not run.
    """
    from ephys.catalog.audit import audit

    if not output.is_dir() or not archive.exists():
        typer.echo("error: OUTPUT must be a folder and --archive must exist", err=True)
        raise typer.Exit(2)
    r = audit(output, archive, also or [])
    if as_json:
        typer.echo(json.dumps(r.to_dict(), indent=2))
    else:
        typer.echo(f"audited {r.n_files} files ({r.n_bytes:,} bytes) for {r.n_tokens} identity tokens of "
                   f"{r.n_recordings} recordings ({r.n_unreadable} unreadable)")
        for kind, where in sorted(r.hits.items()):
            for w, n in sorted(where.items()):
                typer.echo(f"  HIT {kind} token(s) in {n} file(s) of {w}")
        typer.echo("OK: no identity found" if r.ok else "IDENTITY FOUND")
    raise typer.Exit(0 if r.ok else 1)
