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
    return f"sqlite:///{Path(out).resolve() / 'catalog.sqlite'}"


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
