"""User-input errors are typed (issue #21): an EphysError with a code, and still the ValueError callers caught."""

from __future__ import annotations

import pytest

from ephys.errors import EphysError, FilterError, TaxonomyError


def test_bad_taxonomy_file_is_a_taxonomy_error(tmp_path):
    from ephys.annotate.taxonomy import load_taxonomy

    bad = tmp_path / "site.yaml"
    bad.write_text('version: "2026.12.1"\ncategories: []\n', encoding="utf-8")
    with pytest.raises(TaxonomyError, match="'categories' must be a non-empty list") as exc:
        load_taxonomy(bad)
    assert isinstance(exc.value, ValueError) and isinstance(exc.value, EphysError)
    assert exc.value.code == "taxonomy_error" and str(bad) in str(exc.value)
    bad.write_text("version: [unclosed\n", encoding="utf-8")
    with pytest.raises(TaxonomyError, match="not valid YAML"):
        load_taxonomy(bad)


def test_bad_where_clause_is_a_filter_error():
    from ephys.catalog.filters import parse_where

    for clause, reason in [("no_such_field = 1", "unknown field"), ("valid = maybe", "true/false"),
                           ("n_channels = many", "integer")]:
        with pytest.raises(FilterError, match=reason) as exc:
            parse_where(clause)
        assert isinstance(exc.value, ValueError) and exc.value.code == "filter_error"


def test_empty_site_secret_file_is_a_site_secret_error(tmp_path, monkeypatch):
    from ephys.errors import SiteSecretError
    from ephys.ingest.identity import load_site_secret

    monkeypatch.delenv("EPHYS_SITE_SECRET", raising=False)
    empty = tmp_path / "site-secret"
    empty.write_text("\n")
    monkeypatch.setenv("EPHYS_SITE_SECRET_FILE", str(empty))
    with pytest.raises(SiteSecretError, match="is empty") as exc:
        load_site_secret()
    assert isinstance(exc.value, ValueError) and exc.value.code == "site_secret"
    assert empty.read_text() == "\n"  # not replaced by a new secret (that would change every pseudonym)


def test_bad_proposals_file_is_a_taxonomy_error(tmp_path):
    from ephys.annotate.clusters import apply_proposals

    patch = tmp_path / "proposals.yaml"
    patch.write_text("proposals:\n  - {subcategory: seizure/no_such_thing, keywords: [x y]}\n", encoding="utf-8")
    with pytest.raises(TaxonomyError, match="no subcategory 'seizure/no_such_thing'"):
        apply_proposals(patch, None, tmp_path / "site.yaml")
    patch.write_text("just: a mapping\n", encoding="utf-8")
    with pytest.raises(TaxonomyError, match="not a proposals file"):
        apply_proposals(patch, None, tmp_path / "site.yaml")
    assert not (tmp_path / "site.yaml").exists()
