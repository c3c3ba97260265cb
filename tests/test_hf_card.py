"""Hugging Face: `datasets.load_dataset("webdataset", ...)` reads ephys shards, and `ephys manifest card` writes a
dataset card (README with YAML metadata, Croissant JSON-LD) that describes them (#18 part 3).

Oracle: the arrays and metadata the test corpus was written with (tests/test_evaluate.write_dataset)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ephys.cli import _register, app
from ephys.schemas import Manifest
from tests.test_evaluate import write_dataset

datasets = pytest.importorskip("datasets", reason="datasets is a test dependency (pip install -e '.[test]')")
_register()


@pytest.fixture()
def corpus(tmp_path):
    return write_dataset(tmp_path / "d", bad=None)


def test_load_dataset_webdataset_reads_ephys_shards(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    files = sorted(str(p) for p in corpus.manifest.parent.glob("shard-*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train",
                               cache_dir=str(tmp_path / "hf-cache")).with_format("numpy")
    man = Manifest.load(corpus.manifest)
    assert len(ds) == sum(s.n_samples for s in man.shards)  # every sample of the shards; the manifest selects
    by_key = {ds[i]["__key__"]: i for i in range(len(ds))}
    assert set(corpus.keys) <= set(by_key)
    for key in corpus.keys[:5]:
        row = ds[by_key[key]]
        np.testing.assert_array_equal(row["eeg.npy"], corpus.eeg[key])
        assert row["json"]["subject"] == corpus.subject[key]  # (Arrow hands float16 back as float32, values exact)


def test_manifest_card_describes_the_selection(corpus, tmp_path):
    dest = tmp_path / "card"
    r = CliRunner().invoke(app, ["manifest", "card", str(corpus.manifest), "-o", str(dest), "--name", "test corpus"])
    assert r.exit_code == 0, r.output
    text = (dest / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    man = Manifest.load(corpus.manifest)
    assert meta["pretty_name"] == "test corpus" and meta["license"] == "other"
    assert meta["ephys"]["manifest_content_hash"] == man.content_hash and meta["ephys"]["query"] == ["test"]
    paths = meta["configs"][0]["data_files"][0]["path"]
    assert [(dest / p).resolve() for p in paths] == [(corpus.manifest.parent / s.url).resolve() for s in man.shards]
    assert "| epochs | 24 |" in text and "float16 µV" in text and "TODO" in text
    assert "low-pass edge" not in text  # the test manifest does not know it
    cr = json.loads((dest / "croissant.json").read_text(encoding="utf-8"))
    assert cr["@type"] == "sc:Dataset" and cr["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    objects = [d for d in cr["distribution"] if d["@type"] == "cr:FileObject"]
    assert [o["sha256"] for o in objects] == [s.sha256 for s in man.shards]
    fields = {f["name"]: f for f in cr["recordSet"][0]["field"]}
    assert set(fields) == {"eeg.npy", "json"} and "(4, 2500)" in fields["eeg.npy"]["description"]
    # The card's own data_files load with datasets (what a user of the card would do).
    ds = datasets.load_dataset("webdataset", data_files={"train": [str(dest / p) for p in paths]}, split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert len(ds) == sum(s.n_samples for s in man.shards)
    bad = CliRunner().invoke(app, ["manifest", "card", str(tmp_path / "nope.json")])
    assert bad.exit_code == 2 and "no such manifest" in bad.stderr


def test_the_card_states_the_manifests_lowpass_edge(corpus, tmp_path):
    from ephys.manifest.card import write_card

    man = Manifest.load(corpus.manifest)
    man.lowpass_hz = 20.0
    path = man.save(corpus.manifest.with_name("m20.json"))
    write_card(path, tmp_path / "card")
    text = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| low-pass edge |"))
    assert row == "| low-pass edge | 20 Hz (the lowest of the recordings: no signal above it) |"
    assert text.index("| signal |") < text.index(row) < text.index("| selection |")
