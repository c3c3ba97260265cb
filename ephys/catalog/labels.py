"""Annotation labels in the catalog: the texts as counts, clusters of them, and relabelling.

``relabel`` applies a taxonomy (the packaged one or a site's file, e.g. one written by
``ephys annotations apply`` from reviewed cluster proposals) to every annotation row already in
the catalog, from its stored (scrubbed) text: no signal is read again, and the labels are the ones
ingest would give (both label the scrubbed text with :meth:`Matcher.best`). Epochs' annotation
lists inside shards keep the labels of their ingest; selections (``category = ...``) read the catalog.
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, select, update

from ephys.annotate.clusters import DEFAULT_THRESHOLD, Clustering, cluster_texts
from ephys.annotate.taxonomy import taxonomy_matcher
from ephys.catalog import models as m
from ephys.catalog.db import Catalog
from ephys.catalog.queries import _reading, opened_catalog

_LABEL_COLS = ("category", "subcategory", "keyword", "negated", "uncertain", "match_score")


@_reading
def annotation_text_counts(cat: Catalog) -> dict[str, int]:
    """``{text: rows}`` over every annotation row of the catalog."""
    with cat.session() as s:
        return dict(s.execute(select(m.Annotation.text, func.count()).group_by(m.Annotation.text)).all())


def cluster_catalog(catalog: Catalog | str, *, taxonomy: str | None = None,
                    threshold: float = DEFAULT_THRESHOLD) -> Clustering:
    """The catalog's annotation texts clustered (:func:`ephys.annotate.clusters.cluster_texts`),
    labelled with ``taxonomy`` (a YAML file; None: the packaged one). Raises RunError when the
    catalog cannot be read, ValueError for a bad threshold or taxonomy."""
    return cluster_texts(annotation_text_counts(catalog), taxonomy_matcher(taxonomy), threshold=threshold)


def relabel(catalog: Catalog | str, taxonomy: str | None = None) -> dict:
    """Label every annotation row again with ``taxonomy`` (None: the packaged one), in one transaction.

    Returns
    -------
    dict
        ``taxonomy_version``; ``texts`` (distinct texts) and ``rows``; ``changed_texts`` and
        ``changed_rows`` whose labels changed; ``categories_before`` / ``categories_after``
        (non-negated rows per category).

    Raises
    ------
    RunError
        When the catalog cannot be opened or written.
    ValueError, OSError
        When the taxonomy file does not load.
    """
    matcher = taxonomy_matcher(taxonomy)
    A = m.Annotation
    with opened_catalog(catalog) as cat:
        before = _categories(cat)
        with cat.session.begin() as s:
            rows = s.execute(select(A.text, *[getattr(A, c) for c in _LABEL_COLS], func.count())
                             .group_by(A.text, *[getattr(A, c) for c in _LABEL_COLS])).all()
            changes: dict[str, dict] = {}
            n_rows = n_changed_rows = 0
            texts = set()
            for text, *old, n in rows:
                texts.add(text)
                n_rows += n
                b = matcher.best(text)
                new = (dict(category=b.category, subcategory=b.subcategory, keyword=b.keyword, negated=b.negated,
                            uncertain=b.uncertain, match_score=round(float(b.score), 1)) if b is not None
                       else dict.fromkeys(_LABEL_COLS))
                if tuple(old) != tuple(new[c] for c in _LABEL_COLS):
                    changes[text] = new
                    n_changed_rows += n
            if changes:
                stmt = update(A).where(A.text == bindparam("t")).values({c: bindparam(f"v_{c}") for c in _LABEL_COLS})
                params = [{"t": t} | {f"v_{c}": v[c] for c in _LABEL_COLS} for t, v in changes.items()]
                s.connection().execute(stmt.execution_options(synchronize_session=False), params)
        after = _categories(cat)
    return dict(taxonomy_version=matcher.taxonomy.version, texts=len(texts), rows=n_rows, changed_texts=len(changes),
                changed_rows=n_changed_rows, categories_before=before, categories_after=after)


def _categories(cat: Catalog) -> dict[str, int]:
    A = m.Annotation
    with cat.session() as s:
        return dict(s.execute(select(A.category, func.count()).where(A.category.is_not(None), A.negated.is_not(True))
                              .group_by(A.category).order_by(A.category)).all())
