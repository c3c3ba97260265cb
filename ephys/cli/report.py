"""``ephys report``: one self-contained HTML page describing a catalog."""

from __future__ import annotations

from pathlib import Path

import typer

from ephys.cli import app
from ephys.cli.catalog import CATALOG_OPT
from ephys.cli.common import catalog_url, fail
from ephys.errors import EphysError


@app.command("report")
def report_cmd(
    source: Path | None = typer.Argument(None, help="ingest output folder (its catalog.sqlite); or give --catalog"),
    catalog: str | None = CATALOG_OPT,
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write"),
    title: str = typer.Option("ephys corpus report", "--title", help="page title"),
) -> None:
    """Write an HTML report: recordings by status and reason, EEG-hours, QC, sleep stages, annotations, runs."""
    from ephys.catalog.report import write_report  # matplotlib is slow to import: only for this command
    from ephys.progress import setup_logging

    setup_logging()
    url = catalog_url(catalog, source)
    try:
        path = write_report(url, out, title=title, progress=True)
    except (OSError, EphysError) as exc:
        fail(str(exc))
    typer.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
