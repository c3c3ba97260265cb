"""Annotation clustering (#19 part 2): the corpus's texts grouped, unlabelled clusters proposed as
taxonomy keywords, a reviewed patch applied, and the new taxonomy picked up by `catalog relabel`
(without reading signals) and by the next ingest.

Oracles: the texts written into the recordings (which variants belong together is known by
construction), the packaged matcher's labels of them, and ingest's own labels (relabelling with
the taxonomy ingest used changes nothing)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ephys.annotate.clusters import apply_proposals, cluster_texts
from ephys.annotate.taxonomy import load_taxonomy
from ephys.catalog.labels import annotation_text_counts, cluster_catalog, relabel
from ephys.catalog.queries import select_epochs
from ephys.cli import _register, app
from ephys.ingest.writers.edf import write_edf
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from tests.damaged_corpus import RATE, _eeg

_register()
LABELS = ["Fp1", "Fp2", "C3", "C4"]
#: Texts written into the recordings, one per 30-s epoch; the three "Bettgitter" and the two "Essen"
#: spellings mean the same and no taxonomy keyword matches them.
TEXTS = ["Augen zu", "augen zu.", "Bettgitter hochgeklappt", "Anfall 1", "Bettgitter hoch geklappt",
         "Essen gebracht", "Augen zu", "bettgitter hochgeklapt", "Anfall 2", "Essen gebracht.",
         "Bettgitter hochgeklappt", "Licht aus"]


def _write(path: Path, texts: list[str], seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    anns = [(30.0 * i + 5, 0.0, t) for i, t in enumerate(texts)]
    return write_edf(path, _eeg(len(LABELS), 30 * len(texts), seed), LABELS, [RATE] * len(LABELS), annotations=anns)


def test_cluster_texts_groups_variants_and_masks_digits():
    result = cluster_texts(Counter(TEXTS))
    by_rep = {c.representative: c for c in result.clusters}
    bett = by_rep["Bettgitter hochgeklappt"]
    assert (bett.count, bett.label, bett.language, bett.labelled_share) == (4, None, "unknown", 0.0)
    assert sorted(t for t, _ in bett.members) == ["Bettgitter hoch geklappt", "Bettgitter hochgeklappt",
                                                  "bettgitter hochgeklapt"]
    assert by_rep["Augen zu"].members == [("Augen zu", 2), ("augen zu.", 1)] and by_rep["Augen zu"].label == "state/eyes_closed"
    assert by_rep["Augen zu"].language == "de"
    assert by_rep["Anfall 1"].count == 2 and by_rep["Anfall 1"].label == "seizure/seizure"  # digits masked
    assert by_rep["Essen gebracht"].count == 2 and by_rep["Essen gebracht"].label is None
    assert [c.id for c in result.clusters] == list(range(1, 6)) and result.clusters[0] is bett  # largest first
    assert sum(c.count for c in result.clusters) == result.n_texts == len(TEXTS)
    with pytest.raises(ValueError, match="threshold"):
        cluster_texts(Counter(TEXTS), threshold=0)


def test_proposals_apply_relabel_and_next_ingest(tmp_path):
    archive, out = tmp_path / "archive", tmp_path / "out"
    _write(archive / "a.edf", TEXTS, 1)
    config = IngestConfig(montage="native", min_epochs=1)
    ingest(archive, out, config=config, workers=1)
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    assert annotation_text_counts(url) == dict(Counter(TEXTS))

    # Relabelling with the taxonomy ingest used changes nothing: both label the stored text alike.
    same = relabel(url)
    assert (same["rows"], same["changed_rows"], same["categories_before"]) == (12, 0, same["categories_after"])

    # The CLI writes the clusters and the proposals; a reviewer gives the Bettgitter cluster a subcategory.
    runner = CliRunner()
    r = runner.invoke(app, ["annotations", "cluster", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "2 unlabelled clusters (6 annotations)" in r.output
    patch = yaml.safe_load((out / "annotations" / "proposals.yaml").read_text(encoding="utf-8"))
    assert [(p["count"], p["subcategory"], p["keywords"][0]) for p in patch["proposals"]] == [
        (4, None, "Bettgitter hochgeklappt"), (2, None, "Essen gebracht")]
    patch["proposals"][0]["subcategory"] = "procedure/care"
    reviewed = tmp_path / "reviewed.yaml"
    reviewed.write_text(yaml.safe_dump(patch, allow_unicode=True), encoding="utf-8")
    site = tmp_path / "site-taxonomy.yaml"
    r = runner.invoke(app, ["annotations", "apply", str(reviewed), "-o", str(site)])
    assert r.exit_code == 0, r.output
    assert "3 keywords from 1 proposals added (1 without a subcategory left out)" in r.output
    tax, packaged = load_taxonomy(site), load_taxonomy()
    assert tax.version.rsplit(".", 1)[0] == packaged.version.rsplit(".", 1)[0] and tax.version != packaged.version
    assert tax.n_keywords == packaged.n_keywords + 3

    # A patch that would put a keyword in two subcategories is refused and writes nothing.
    bad = {"proposals": [{"subcategory": "artifact/movement", "language": "de", "keywords": ["Anfall"]}]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(ValueError, match="not valid"):
        apply_proposals(tmp_path / "bad.yaml", site, tmp_path / "bad-taxonomy.yaml")
    assert not (tmp_path / "bad-taxonomy.yaml").exists() and not (tmp_path / "bad-taxonomy.yaml.tmp").exists()

    # relabel applies it to the catalog without reading signals; selections follow.
    before = {e.key for e in select_epochs(url, ["subcategory = care"])}
    r = runner.invoke(app, ["catalog", "relabel", "--out", str(out), "--taxonomy", str(site)])
    assert r.exit_code == 0, r.output
    assert "4 of 12 annotations relabelled (3 of 10 distinct texts)" in r.output
    after = {e.key for e in select_epochs(url, ["subcategory = care"])}
    assert before == set() and len(after) == 4
    assert cluster_catalog(url, taxonomy=str(site)).unlabelled[0].representative == "Essen gebracht"

    # The next ingest with the site taxonomy labels a new recording's texts at once.
    _write(archive / "b.edf", ["Bettgitter hochgeklappt", "Essen gebracht"], 2)
    s = ingest(archive, out, config=config.model_copy(update={"taxonomy": str(site)}), workers=1)
    assert (s.n_ok, s.n_skipped) == (1, 1)
    assert len({e.key for e in select_epochs(url, ["subcategory = care"])}) == 5
    with pytest.raises(Exception, match="taxonomy"):
        ingest(archive, out, config=config.model_copy(update={"taxonomy": str(tmp_path / "none.yaml")}), workers=1)
