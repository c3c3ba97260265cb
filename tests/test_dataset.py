"""ephys.data.EpochDataset: a map-style dataset over a manifest (#18 part 2).

Oracle: the arrays and labels the test corpus was written with (tests/test_evaluate.write_dataset: 6 subjects,
class A = 10 Hz / stage W, class B = 2 Hz / stage N3, the last epoch of a subject unstaged). braindecode 1.8
cannot be used beside torch 2.13 here (it imports torchaudio, whose newest wheel, 2.11.1, fails to load its
native library with torch 2.13), so the training check uses a shallow ConvNet in plain PyTorch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from ephys.data import EpochDataset, splits_path, subject_splits
from ephys.errors import ManifestError
from ephys.schemas import Manifest
from tests.test_evaluate import write_dataset


@pytest.fixture()
def corpus(tmp_path):
    return write_dataset(tmp_path / "d", bad=None)


def test_random_access_matches_what_was_written(corpus):
    ds = EpochDataset(corpus.manifest, label="stage")
    assert len(ds) == len(corpus.keys) == 24 and ds.keys == corpus.keys
    assert ds.classes == ["N3", "W"]
    for i in (7, 0, 23, 7):  # any order, again
        x, y, meta = ds[i]
        key = corpus.keys[i]
        assert x.dtype == torch.float32 and tuple(x.shape) == (4, 2500)
        np.testing.assert_array_equal(x.numpy(), corpus.eeg[key].astype(np.float32))
        assert meta["key"] == key and meta["subject"] == corpus.subject[key]
        staged = meta["sleep"]["stage"]
        assert y == (-1 if staged is None else ds.classes.index(staged))
        assert staged is None or staged == ("W" if corpus.cls[key] == "A" else "N3")
    # any dotted metadata field is a label; numbers stay numbers
    by_start = EpochDataset(corpus.manifest, label="start_s")
    assert [by_start[k][1] for k in range(4)] == [0.0, 10.0, 20.0, 30.0] and by_start.classes == []


def test_subject_splits_are_disjoint_deterministic_and_stored(corpus):
    parts = {s: EpochDataset(corpus.manifest, split=s, seed=3) for s in ("train", "validation", "test")}
    subjects = {s: {m["subject"] for m in d.metas()} for s, d in parts.items()}
    assert sum(len(d) for d in parts.values()) == 24
    assert not (subjects["train"] & subjects["validation"]) and not (subjects["train"] & subjects["test"])
    assert not (subjects["validation"] & subjects["test"])
    assert [len(v) for v in subjects.values()] == [4, 1, 1]  # 6 subjects at 0.8 / 0.1 / 0.1, each split non-empty
    stored = json.loads(splits_path(corpus.manifest).read_text())
    assert stored["manifest"] == Manifest.load(corpus.manifest).content_hash and stored["seed"] == 3
    assert stored["subjects"] == subject_splits(sorted(set(corpus.subject.values())), seed=3)
    assert parts["test"][0][2]["split"] == "test" and parts["train"][0][2]["split"] == "train"
    again = EpochDataset(corpus.manifest, split="test", seed=3)
    assert again.keys == parts["test"].keys
    other = subject_splits(sorted(set(corpus.subject.values())), seed=4)
    assert other != stored["subjects"]  # another seed, another assignment (of the same subjects)
    with pytest.raises(ValueError, match="split must be one of"):
        EpochDataset(corpus.manifest, split="dev")
    with pytest.raises(ValueError, match="summing to 1"):
        subject_splits(["a"], (0.5, 0.2, 0.2))


def test_label_file_and_dataloader_workers(corpus, tmp_path):
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("key\tlabel\n" + "".join(f"{k}\t{'slow' if corpus.cls[k] == 'B' else 'fast'}\n"
                                            for k in corpus.keys[:20]))
    ds = EpochDataset(corpus.manifest, labels=tsv)
    assert ds.classes == ["fast", "slow"]
    assert [ds[i][1] for i in range(24)] == [int(corpus.cls[k] == "B") for k in corpus.keys[:20]] + [-1] * 4
    loader = torch.utils.data.DataLoader(ds.pairs(), batch_size=8, shuffle=True, num_workers=2,
                                         generator=torch.Generator().manual_seed(0))
    xs, ys = zip(*loader)
    assert sum(len(x) for x in xs) == 24 and all(tuple(x.shape[1:]) == (4, 2500) for x in xs)
    assert sorted(torch.cat(ys).tolist()) == sorted(ds[i][1] for i in range(24))
    (tmp_path / "bad.tsv").write_text("id,label\n")
    with pytest.raises(ManifestError, match="columns key and label"):
        EpochDataset(corpus.manifest, labels=tmp_path / "bad.tsv")


def test_a_shallow_convnet_learns_from_it(corpus):
    torch.manual_seed(0)
    ds = EpochDataset(corpus.manifest, label="stage")
    keep = [i for i in range(len(ds)) if ds[i][1] >= 0]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds.pairs(), keep), batch_size=6, shuffle=True)
    net = torch.nn.Sequential(  # ShallowFBCSPNet's shape (Schirrmeister et al. 2017): temporal, spatial, square, pool, log
        torch.nn.Conv2d(1, 8, (1, 25)), torch.nn.Conv2d(8, 8, (4, 1), bias=False), torch.nn.BatchNorm2d(8))
    head = torch.nn.Linear(8 * 33, 2)  # 2500 - 24 samples, pooled by 75: 33
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)

    def forward(x):
        h = net(x[:, None] / 50.0) ** 2
        h = torch.nn.functional.avg_pool2d(h, (1, 75), (1, 75))
        return head(torch.log(h.clamp_min(1e-6)).flatten(1))

    losses = []
    for _ in range(6):
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(forward(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    net.eval()
    with torch.no_grad():
        pred = torch.cat([forward(x).argmax(1) for x, _ in torch.utils.data.DataLoader(
            torch.utils.data.Subset(ds.pairs(), keep), batch_size=18)])
    truth = torch.tensor([ds[i][1] for i in keep])
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) and (pred == truth).float().mean() >= 0.9


def test_moved_missing_and_remote_shards_are_typed_errors(corpus, tmp_path):
    shutil.move(corpus.manifest.parent / "shard-000001.tar", tmp_path / "elsewhere.tar")
    with pytest.raises(ManifestError, match=r"shard shard-000001.tar is missing"):
        EpochDataset(corpus.manifest)
    shutil.move(tmp_path / "elsewhere.tar", corpus.manifest.parent / "shard-000001.tar")
    ds = EpochDataset(corpus.manifest)
    (corpus.manifest.parent / "shard-000000.tar").unlink()  # disappears after indexing
    with pytest.raises(ManifestError, match="disappeared"):
        ds[0]
    m = Manifest.load(corpus.manifest)
    m.shards[0].url = "s3://bucket/shard-000000.tar"
    m.save(tmp_path / "remote.json")
    with pytest.raises(ManifestError, match="local shards only"):
        EpochDataset(tmp_path / "remote.json")
