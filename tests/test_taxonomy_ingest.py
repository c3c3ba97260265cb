"""Annotation labels through a real ingest: every annotation row carries its taxonomy label (or none),
negated ones do not select epochs, and the catalog counts categories and unlabelled text."""

from __future__ import annotations

import json
import tarfile

import numpy as np

from ephys.catalog.queries import catalog_stats, select_epochs
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig, Manifest
from ephys.ingest.writers.edf import write_edf

TEXTS = [
    (5.0, 0.0, "Augen zu"),
    (40.0, 15.0, "Anfall li temporal"),
    (75.0, 0.0, "kein Anfall, Kauartefakte"),
    (100.0, 0.0, "V.a. subklinisches Anfallsmuster"),
    (130.0, 0.0, "Start"),
]


def test_annotations_are_labelled_in_catalog_and_shards(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    rng = np.random.default_rng(0)
    x = [rng.normal(0, 20, 180 * 128) for _ in range(3)]
    write_edf(a / "r.edf", x, ["EEG C3", "EEG C4", "EEG O1"], [128] * 3, annotations=TEXTS)
    out = tmp_path / "out"
    ingest(a, out, config=IngestConfig(montage="native", min_epochs=1), workers=1)
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    from sqlalchemy import select

    from ephys.catalog import models as m
    from ephys.catalog.db import Catalog

    c = Catalog(url)
    with c.session() as s:
        rows = {r.text: r for r in s.scalars(select(m.Annotation))}
    c.close()
    assert (rows["Augen zu"].category, rows["Augen zu"].negated) == ("state", False)
    assert (rows["Anfall li temporal"].category, rows["Anfall li temporal"].match_score) == ("seizure", 100.0)
    assert rows["kein Anfall, Kauartefakte"].category == "artifact"  # the negated seizure is not the primary label
    assert rows["V.a. subklinisches Anfallsmuster"].uncertain is True
    assert rows["Start"].category is None and rows["Start"].keyword is None
    st = catalog_stats(url)
    assert st["annotations_unlabelled"] == 1 and st["annotation_categories"]["seizure"] >= 1
    seizure_epochs = select_epochs(url, ["category = seizure"])
    assert [int(e.key[-6:]) for e in seizure_epochs] == [1, 3]  # 40-55 s, and the uncertain one at 100 s
    assert [int(e.key[-6:]) for e in select_epochs(url, ["category = artifact"])] == [2]
    with tarfile.open(next((out / "shards").glob("*.tar"))) as tar:
        metas = {json.loads(tar.extractfile(t).read())["epoch_index"]: json.loads(tar.extractfile(t).read())
                 for t in tar.getmembers() if t.name.endswith(".json")}
    assert [(x["text"], x["category"]) for x in metas[1]["annotations"]] == [("Anfall li temporal", "seizure")]
    # A manifest takes the same clauses: the seizure epochs whose quality score is high enough.
    from ephys.manifest import create_manifest

    man = create_manifest(url, ["category = seizure", "score >= 0.5", "valid = true"], tmp_path / "sz.json")
    keys = [e.key for e in select_epochs(url, ["category = seizure", "score >= 0.5", "valid = true"])]
    assert man.counts["epochs"] == len(keys) == 2
    assert sorted(Manifest.load(tmp_path / "sz.json").shards[0].keys) == sorted(keys)
    import pytest

    from ephys.errors import ManifestError

    with pytest.raises(ManifestError, match=r"the selection is empty: .*category = seizure AND score > 1"):
        create_manifest(url, ["category = seizure", "score > 1"], tmp_path / "none.json")
    assert not (tmp_path / "none.json").exists()
