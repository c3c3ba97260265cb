"""``ephys manifest create`` and ``ephys manifest show``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ephys.catalog.filters import valid_fields_text
from ephys.cli import manifest_app
from ephys.cli.catalog import CATALOG_OPT, JSON_OPT, OUT_OPT, console
from ephys.cli.common import catalog_url, fail
from ephys.errors import EphysError


@manifest_app.command("create")
def create(
    output: Path = typer.Option(..., "--output", "-o", help="manifest file to write (JSON)"),
    catalog: str | None = CATALOG_OPT,
    out: Path | None = OUT_OPT,
    where: list[str] | None = typer.Option(
        None, "--where", "-w", help=f"FIELD OP VALUE, repeatable (all must hold). {valid_fields_text()}"
    ),
    relative_urls: bool = typer.Option(
        False, "--relative-urls", help="store shard paths relative to the manifest's folder"
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Freeze the epochs matching every --where clause into a manifest; prints counts and the content hash."""
    from ephys.manifest import create_manifest  # SQLAlchemy and NumPy load here, not for --help

    url = catalog_url(catalog, out)
    try:
        man = create_manifest(url, list(where or []), output, relative_urls=relative_urls)
    except (ValueError, EphysError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"path": str(output), "counts": man.counts, "content_hash": man.content_hash}, indent=2))
        return
    c = man.counts
    typer.echo(
        f"wrote {output}: {c['epochs']} epochs from {c['recordings']} recordings, "
        f"{c['subjects']} subjects, {c['shards']} shards"
    )
    typer.echo(f"content hash: {man.content_hash}")


@manifest_app.command("show")
def show(
    path: Path = typer.Argument(..., help="manifest file"),
    as_json: bool = JSON_OPT,
) -> None:
    """Verify a manifest and summarise it (counts, layout, shards and whether they are present)."""
    from ephys.manifest import show_manifest

    try:
        info = show_manifest(path)
    except EphysError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    t = Table(title=str(path), show_header=False)
    t.add_column("field")
    t.add_column("value")
    t.add_row("content hash", info["content_hash"])
    t.add_row("created", info["created_at"])
    t.add_row("ephys", info["ephys_version"])
    t.add_row("query", " AND ".join(info["query"]) or "(all)")
    t.add_row("montage", f"{info['montage']} ({len(info['channel_names'])} channels)")
    t.add_row("channels", ", ".join(info["channel_names"]))
    t.add_row("signal", f"{info['sfreq']:g} Hz x {info['n_samples']} samples")
    if info["lowpass_hz"] is not None:
        t.add_row("low-pass edge", f"{info['lowpass_hz']:g} Hz (lowest of the recordings: no signal above it)")
    for k, v in info["counts"].items():
        t.add_row(k, str(v))
    if info["missing_shards"]:
        t.add_row("missing shards", str(info["missing_shards"]))
    console().print(t)
    s = Table(title="shards")
    for col in ("url", "selected", "samples", "present"):
        s.add_column(col)
    for sh in info["shards"]:
        present = "?" if sh["exists"] is None else ("yes" if sh["exists"] else "NO")
        s.add_row(sh["url"], str(sh["n_selected"]), str(sh["n_samples"]), present)
    console().print(s)


@manifest_app.command("card")
def card(
    path: Path = typer.Argument(..., help="manifest file"),
    out: Path | None = typer.Option(None, "-o", "--out", help="folder for README.md and croissant.json "
                                       "[default: the manifest's folder]"),
    name: str | None = typer.Option(None, "--name", help="the dataset's name [default: from the content hash]"),
) -> None:
    """Write a dataset card: README.md (Hugging Face YAML metadata; `datasets.load_dataset` reads the shards) and
    croissant.json (MLCommons Croissant 1.0). Licence, citation and contact are left as TODO for the site."""
    from ephys.manifest.card import write_card

    try:
        paths = write_card(path, out or path.parent, name)
    except (EphysError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"wrote {paths[0]} and {paths[1]}; fill in the licence, citation and contact (TODO)")
