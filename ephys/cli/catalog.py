"""``ephys catalog stats``, ``query`` (read-only views of a catalog) and ``verify`` (shards against the catalog)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ephys.catalog.filters import valid_fields_text
from ephys.cli import catalog_app
from ephys.cli.common import catalog_url, fail
from ephys.errors import EphysError

CATALOG_OPT = typer.Option(None, "--catalog", help="catalog URL (sqlite:///..., postgresql+psycopg://...)")
OUT_OPT = typer.Option(None, "--out", help="ingest output folder; the catalog is OUT/catalog.sqlite")
JSON_OPT = typer.Option(False, "--json", help="print JSON instead of a table")


def console() -> Console:
    """A stdout console; wide enough not to squeeze tables when stdout is not a terminal."""
    c = Console()
    if not c.is_terminal:
        c = Console(width=200)
    return c


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _print_stats(st: dict) -> None:
    t = Table(title="catalog", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    r = st["recordings"]
    t.add_row("recordings", str(r["total"]))
    for k, v in r.items():
        if k != "total":
            t.add_row(f"  {k}", str(v))
    for status, codes in st["failure_codes"].items():
        for code, n in codes.items():
            t.add_row(f"  {status}: {code}", str(n))
    t.add_row("EEG hours (ok)", f"{st['eeg_hours']['ok']:.2f}")
    t.add_row("EEG hours (read)", f"{st['eeg_hours']['read']:.2f}")
    t.add_row("epochs", str(st["epochs"]["total"]))
    t.add_row("  valid", str(st["epochs"]["valid"]))
    t.add_row("shards", str(st["shards"]["count"]))
    t.add_row("  samples", str(st["shards"]["samples"]))
    t.add_row("  bytes", str(st["shards"]["bytes"]))
    t.add_row("annotations", str(st["annotations"]))
    if st["sidecars"]["files"]:
        sc = st["sidecars"]
        t.add_row("  from sidecars", str(st["annotations_from_sidecars"]))
        t.add_row("annotation sidecars", f"{sc['files']} ({sc['entries']} entries, {sc['attached']} attached)")
    t.add_row("subjects", str(st["subjects"]["total"]))
    t.add_row("  with ok recordings", str(st["subjects"]["ok"]))
    for f, n in st["formats"].items():
        t.add_row(f"format {f}", str(n))
    t.add_row("runs", str(st["runs"]["count"]))
    t.add_row("  last run", _fmt(st["runs"]["last_status"]))
    console().print(t)


@catalog_app.command("stats")
def stats(
    catalog: str | None = CATALOG_OPT,
    out: Path | None = OUT_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Counts of recordings by status and failure code, EEG hours, epochs, shards, subjects, runs."""
    from ephys.catalog.queries import catalog_stats  # SQLAlchemy loads here, not for --help

    url = catalog_url(catalog, out)
    try:
        st = catalog_stats(url)
    except EphysError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(st, indent=2))
    else:
        _print_stats(st)


@catalog_app.command("query")
def query(
    catalog: str | None = CATALOG_OPT,
    out: Path | None = OUT_OPT,
    where: list[str] | None = typer.Option(
        None, "--where", "-w", help=f"FIELD OP VALUE, repeatable (all must hold). {valid_fields_text()}"
    ),
    status: str | None = typer.Option(None, "--status", help="ok, rejected or failed"),
    fmt: str | None = typer.Option(None, "--format", help="recording format, e.g. edf"),
    min_duration: float | None = typer.Option(None, "--min-duration", help="duration_s >= this (seconds)"),
    min_channels: int | None = typer.Option(None, "--min-channels", help="n_eeg_channels >= this"),
    min_valid_epochs: int | None = typer.Option(None, "--min-valid-epochs", help="n_valid_epochs >= this"),
    subject: str | None = typer.Option(None, "--subject", help="pseudonymous subject id"),
    annotation: str | None = typer.Option(None, "--annotation", help="has an annotation containing this text"),
    failure_code: str | None = typer.Option(None, "--failure-code", help="e.g. corrupt, too_short"),
    limit: int | None = typer.Option(None, "--limit", min=0, help="at most this many recordings"),
    as_json: bool = JSON_OPT,
) -> None:
    """List recordings matching every clause, ordered by SHA-256."""
    from ephys.catalog.queries import RECORDING_COLUMNS, query_recordings

    url = catalog_url(catalog, out)
    clauses: list[str] = []
    if status is not None:
        clauses.append(f"status = {status}")
    if fmt is not None:
        clauses.append(f"format = {fmt}")
    if min_duration is not None:
        clauses.append(f"duration_s >= {min_duration!r}")
    if min_channels is not None:
        clauses.append(f"n_eeg_channels >= {min_channels}")
    if min_valid_epochs is not None:
        clauses.append(f"n_valid_epochs >= {min_valid_epochs}")
    if subject is not None:
        clauses.append(f"subject = {subject}")
    if annotation is not None:
        clauses.append(f"annotation ~ {annotation}")
    if failure_code is not None:
        clauses.append(f"failure_code = {failure_code}")
    clauses.extend(where or [])
    try:
        rows = query_recordings(url, clauses, limit=limit)
    except (ValueError, EphysError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"where": clauses, "count": len(rows), "recordings": rows}, indent=2))
        return
    t = Table(title=f"{len(rows)} recordings" + (f" where {' AND '.join(clauses)}" if clauses else ""))
    for col in RECORDING_COLUMNS:
        if col != "failure_reason":
            t.add_column(col, no_wrap=col == "sha256")
    for r in rows:
        t.add_row(*(_fmt(r[c]) for c in RECORDING_COLUMNS if c != "failure_reason"))
    console().print(t)


@catalog_app.command("verify")
def verify(
    catalog: str | None = CATALOG_OPT,
    out: Path | None = OUT_OPT,
    shards: Path | None = typer.Option(None, "--shards", help="shard folder [default: OUT/shards with --out, "
                                          "else the folder the ingest recorded in the catalog]"),
    repair: bool = typer.Option(False, "--repair", help="quarantine damaged shards and re-queue their recordings "
                                "for the next `ephys ingest` of the archive"),
    as_json: bool = JSON_OPT,
) -> None:
    """Re-check every shard's SHA-256, size and samples, and every epoch row, against the catalog.

    Exit code 0 when everything matches, 1 when something differs, also a shard file the catalog
    does not know (an interrupted run's; after --repair too: run `ephys ingest` again to rebuild),
    2 when the check could not run or, with --repair, an ingest holds the output folder.
    """
    from ephys.catalog.verify import verify_catalog
    from ephys.pipeline.lock import OutputLock
    from ephys.progress import Progress, setup_logging

    setup_logging()
    url = catalog_url(catalog, out)
    lock = None
    bar: list[Progress] = []

    def progress(name: str, i: int, n: int) -> None:  # before shard i of n: the previous one is done
        if not bar:
            bar.append(Progress("verify", n, "shards"))
        elif i:
            bar[0].advance(info=name)

    try:
        if repair and out is not None:  # no repair under a running ingest's feet
            lock = OutputLock(out).acquire()
        report = verify_catalog(url, shards or (out / "shards" if out else None), repair=repair, progress=progress)
        if bar:
            bar[0].advance()
    except EphysError as exc:
        fail(str(exc))
    finally:
        if bar:
            bar[0].close()
        if lock is not None:
            lock.release()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        c = console()
        c.print(f"checked {report.n_shards} shards ({report.n_samples} samples, {report.n_bytes:,} bytes) "
                f"and {report.n_epochs} epoch rows")
        for p in report.problems:
            c.print(f"  [{p.kind}] {p.detail}", markup=False)
        if report.quarantined:
            c.print(f"moved {len(report.quarantined)} damaged or orphan shard files to quarantine/: {', '.join(report.quarantined)}")
        if report.requeued:
            c.print(f"re-queued {len(report.requeued)} recordings: run the same `ephys ingest ARCHIVE --out ...` "
                    "again to rebuild their missing epochs")
        if report.clean:
            c.print("OK")
        elif report.ok:
            n = sum(p.kind == "orphan_file" for p in report.problems)
            c.print(f"ORPHAN FILES: {n} shard files the catalog does not know; `--repair` moves them to quarantine/")
        else:
            c.print("DIFFERENCES FOUND")
    raise typer.Exit(0 if report.clean else 1)


@catalog_app.command("locate")
def locate_cmd(
    prefix: str = typer.Argument(..., help="SHA-256 prefix of a recording as logs print it (12 hex digits; 6 at least)."),
    archive: Path = typer.Option(..., "--archive", help="The archive folder the ingest walked."),
    catalog: str | None = CATALOG_OPT,
    out: Path | None = OUT_OPT,
    to_pipe: bool = typer.Option(False, "--to-pipe", help="Print paths even when stdout is not a terminal."),
) -> None:
    """Print the archive path(s) of a recording named in a log line or failure (needs the site secret).

    Paths can hold patient names, so they are printed only to an interactive terminal unless
    --to-pipe. Exit code 0 when found, 1 when not, 2 when it could not run.
    """
    import sys

    from ephys.catalog.locate import locate
    from ephys.ingest.identity import printable_path

    if not (sys.stdout.isatty() or to_pipe):
        fail("stdout is not a terminal: paths can hold patient names; pass --to-pipe to print them anyway")
    try:
        found = locate(catalog_url(catalog, out), archive, prefix)
    except EphysError as exc:
        fail(str(exc))
    if not found:
        typer.echo("no recording in the catalog has that prefix", err=True)
        raise typer.Exit(1)
    for sha, paths in sorted(found.items()):
        for p in paths or ["(not found in this archive: moved, renamed, or another archive root)"]:
            typer.echo(f"{sha[:12]}  {printable_path(p)}")
    raise typer.Exit(0 if any(found.values()) else 1)


@catalog_app.command("relabel")
def relabel_cmd(
    catalog: str | None = CATALOG_OPT,
    out: Path | None = OUT_OPT,
    taxonomy: Path | None = typer.Option(None, "--taxonomy", help="taxonomy YAML [default: the packaged one]"),
    as_json: bool = JSON_OPT,
) -> None:
    """Label every annotation of the catalog again with --taxonomy, from its stored text (no signal is read).

    Selections (category = ..., subcategory = ...) follow at once; annotations inside shards keep their
    ingest's labels.
    """
    from ephys.catalog.labels import relabel

    url = catalog_url(catalog, out)
    try:
        r = relabel(url, str(taxonomy) if taxonomy else None)
    except (EphysError, ValueError, OSError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(r, indent=2))
        return
    typer.echo(f"taxonomy {r['taxonomy_version']}: {r['changed_rows']} of {r['rows']} annotations relabelled "
               f"({r['changed_texts']} of {r['texts']} distinct texts)")
    for cat in sorted(set(r["categories_before"]) | set(r["categories_after"])):
        typer.echo(f"  {cat:<12} {r['categories_before'].get(cat, 0):>8} -> {r['categories_after'].get(cat, 0)}")
