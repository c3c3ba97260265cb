"""The ``ephys`` command line: a thin Typer layer over functions callable from Python.

Each sub-module registers its commands on :data:`app`:
``ingest`` (and ``demo-archive``), ``catalog``, ``annotations``, ``manifest``, ``export``, ``report``, ``pretrain``.
"""

from __future__ import annotations

import typer

#: Help texts are read as Markdown (``code`` shows as code), not Rich markup, which took ``[default: ...]`` and
#: ``ephys[bids]`` for style tags and dropped them from ``--help``.
MARKUP = "markdown"

app = typer.Typer(
    name="ephys",
    help="Turn an EEG archive into a curated, queryable, training-ready corpus, and pretrain on it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=MARKUP,
)
catalog_app = typer.Typer(help="Query the catalog of an ingest.", no_args_is_help=True, rich_markup_mode=MARKUP)
manifest_app = typer.Typer(help="Freeze and inspect curated selections of epochs.", no_args_is_help=True,
                           rich_markup_mode=MARKUP)
annotations_app = typer.Typer(help="Cluster the corpus's annotation texts and grow the taxonomy from them.",
                              no_args_is_help=True, rich_markup_mode=MARKUP)
app.add_typer(catalog_app, name="catalog")
app.add_typer(manifest_app, name="manifest")
export_app = typer.Typer(help="Export a manifest's corpus in the field's formats (EDF+).", no_args_is_help=True,
                        rich_markup_mode=MARKUP)
app.add_typer(annotations_app, name="annotations")
app.add_typer(export_app, name="export")


def _register() -> None:
    # Imported for their side effect of registering commands.
    from ephys.cli import audit, catalog, evaluate, export, ingest, labels, manifest, pretrain, report  # noqa: F401


def main() -> None:
    _register()
    app()
