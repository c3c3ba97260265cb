"""Options and helpers shared by the sub-commands."""

from __future__ import annotations

from pathlib import Path

import typer


def catalog_url(catalog: str | None, out: Path | None) -> str:
    """The catalog URL: ``--catalog`` if given, else ``sqlite:///OUT/catalog.sqlite``."""
    if catalog:
        return catalog
    if out is None:
        raise typer.BadParameter("give --catalog URL or --out DIR")
    from ephys.catalog.db import default_catalog_url  # here, not at import: --help loads no SQLAlchemy

    return default_catalog_url(out)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
