"""``ephys annotations cluster`` (group the corpus's annotation texts, propose taxonomy keywords) and
``ephys annotations apply`` (add reviewed proposals to a taxonomy file)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ephys.cli import annotations_app
from ephys.cli.catalog import CATALOG_OPT, JSON_OPT, OUT_OPT, console
from ephys.cli.common import catalog_url, fail
from ephys.errors import EphysError


@annotations_app.command("cluster")
def cluster(
    catalog: str | None = CATALOG_OPT,
    out: Path | None = OUT_OPT,
    dest: Path | None = typer.Option(None, "--dest", help="where clusters.json and proposals.yaml go "
                                        "[default: OUT/annotations, or ./annotations with --catalog]"),
    taxonomy: Path | None = typer.Option(None, "--taxonomy", help="taxonomy YAML [default: the packaged one]"),
    threshold: float = typer.Option(85.0, min=1, max=100, help="similarity (rapidfuzz token_sort_ratio, 0-100) "
                                    "a text needs to join a cluster"),
    top: int = typer.Option(20, min=1, help="clusters shown in the table"),
    min_count: int = typer.Option(2, min=1, help="occurrences an unlabelled cluster needs to be proposed"),
    as_json: bool = JSON_OPT,
) -> None:
    """Group the catalog's annotation texts into clusters (count, representative, language, taxonomy label)
    and write the largest unlabelled ones as a YAML patch of proposed keywords to review."""
    from ephys.annotate.clusters import proposals_yaml
    from ephys.catalog.labels import cluster_catalog

    url = catalog_url(catalog, out)
    try:
        result = cluster_catalog(url, taxonomy=str(taxonomy) if taxonomy else None, threshold=threshold)
    except (EphysError, ValueError, OSError) as exc:
        fail(str(exc))
    folder = dest or (Path(out) / "annotations" if out and not catalog else Path("annotations"))
    folder.mkdir(parents=True, exist_ok=True)
    as_dict = result.to_dict()
    (folder / "clusters.json").write_text(json.dumps(as_dict, indent=1, ensure_ascii=False), encoding="utf-8")
    (folder / "proposals.yaml").write_text(proposals_yaml(result, min_count=min_count), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(as_dict, ensure_ascii=False))
        return
    from rich.table import Table

    t = Table(title=f"{len(result.clusters)} clusters of {result.n_texts} annotations ({result.n_distinct} distinct "
                    f"texts; taxonomy {result.taxonomy_version})")
    for col in ("id", "count", "texts", "language", "label", "labelled", "representative"):
        t.add_column(col, justify="right" if col in ("id", "count", "texts", "labelled") else "left")
    for c in result.clusters[:top]:
        t.add_row(str(c.id), str(c.count), str(len(c.members)), c.language, c.label or "-",
                  f"{100 * c.labelled_share:.0f} %", c.representative[:60])
    console().print(t)
    n_unl = sum(c.count for c in result.unlabelled)
    typer.echo(f"{len(result.unlabelled)} unlabelled clusters ({n_unl} annotations); proposals for review: "
               f"{folder / 'proposals.yaml'}; all clusters: {folder / 'clusters.json'}")


@annotations_app.command("apply")
def apply(
    patch: Path = typer.Argument(..., help="a reviewed proposals.yaml of `ephys annotations cluster`"),
    output: Path = typer.Option(..., "-o", "--output", help="the taxonomy file to write"),
    taxonomy: Path | None = typer.Option(None, "--taxonomy", help="taxonomy YAML to start from "
                                            "[default: the packaged one]"),
) -> None:
    """Add the keywords of reviewed proposals (those given a subcategory) to a taxonomy, validated, as a new file.

    Use it with `ephys ingest --taxonomy FILE` and `ephys catalog relabel --taxonomy FILE`.
    """
    from ephys.annotate.clusters import apply_proposals

    try:
        r = apply_proposals(patch, taxonomy, output)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"{output}: {r['keywords']} keywords from {r['applied']} proposals added ({r['skipped']} without a "
               "subcategory left out)")
