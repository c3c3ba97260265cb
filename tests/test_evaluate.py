"""Frozen-encoder evaluation: manifest-order reading, embeddings, files, labels, linear probes, errors, CLI."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from collections import Counter
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ephys.errors import ManifestError
from ephys.pretrain import CheckpointMismatchError, PretrainError, RunConfig, load_config, pretrain
from ephys.pretrain.evaluate import (
    embed,
    iter_manifest_epochs,
    labels_from_meta,
    probe,
    read_embeddings,
    sidecar_path,
    write_embeddings,
)
from ephys.pretrain.train import build_model, read_checkpoint
from ephys.pretrain.views import ViewConfig, make_view
from tests.test_pretrain import _add
from ephys.schemas.epoch import EpochAnnotation, EpochMeta, EpochQC, EpochStage
from ephys.schemas.manifest import Manifest, ManifestShard
from ephys.shard.writer import npy_bytes

N_CH, N_T, SFREQ = 4, 2500, 250.0  # 10-s epochs keep the tests fast
CHANNELS = [f"R{i}" for i in range(N_CH)]
HIERA_DIM = 2560  # cpu-tiny: every stage's token rows, 16 x 32 + 8 x 64 + 4 x 128 + 4 x 256
MAE_DIM = 64  # MAEConfig default width
BAD = (1, 2)  # (shard, index) of a selected sample with an undecodable eeg.npy


@dataclass
class Dataset:
    manifest: Path
    keys: list[str] = field(default_factory=list)  # readable selected keys, manifest order
    eeg: dict[str, np.ndarray] = field(default_factory=dict)  # key -> float16 (C, T) µV
    subject: dict[str, str] = field(default_factory=dict)  # key -> pseudonymous subject id
    cls: dict[str, str] = field(default_factory=dict)  # key -> "A" (10 Hz) or "B" (2 Hz)
    bad: list[str] = field(default_factory=list)


def _signal(rng: np.random.Generator, n_ch: int, hz: float, sfreq: float, n_t: int) -> np.ndarray:
    t = np.arange(n_t) / sfreq
    phase = rng.uniform(0, 2 * np.pi, (n_ch, 1))
    amp = rng.uniform(30.0, 50.0, (n_ch, 1))
    return (amp * np.sin(2 * np.pi * hz * t + phase) + rng.normal(0, 3.0, (n_ch, n_t))).astype(np.float16)


def write_dataset(root: Path, *, subjects_per_shard=(3, 3), per_subject: int = 4, n_ch: int = N_CH,
                  sfreq: float = SFREQ, n_t: int = N_T, bad=BAD, only_b: set[int] = frozenset(),
                  seed: int = 0) -> Dataset:
    """Shards + manifest.  Epoch ``i`` of a subject is class A (10 Hz, stage W, annotation "alpha" after a negated
    "seizure") for even ``i``, else class B (2 Hz, stage N3, no annotation); the last epoch of each subject is
    unstaged; the first sample of each shard is left out of the manifest; subjects in ``only_b`` have B only."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ds = Dataset(manifest=root / "manifest.json")
    channels = [f"R{i}" for i in range(n_ch)]
    shards, subject_no = [], 0
    for s, n_subjects in enumerate(subjects_per_shard):
        path = root / f"shard-{s:06d}.tar"
        keys = []
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            samples = [(None, 0)] + [(subject_no + j, i) for j in range(n_subjects) for i in range(per_subject)]
            subject_no += n_subjects
            for index, (subj, i) in enumerate(samples):
                key = f"{seed:04x}{s:04x}_{index:06d}"
                cls = "B" if subj in only_b or i % 2 else "A"
                arr = _signal(rng, n_ch, 10.0 if cls == "A" else 2.0, sfreq, n_t)
                subject = hashlib.sha256(f"subject {subj}".encode()).hexdigest()[:16]
                annotations = [EpochAnnotation(onset_s=0, duration_s=1, text="x", category="seizure", negated=True),
                               EpochAnnotation(onset_s=0, duration_s=1, text="y", category="alpha")] \
                    if cls == "A" else []
                meta = EpochMeta(
                    key=key, recording="ab" * 32, subject=subject, epoch_index=i, start_s=10.0 * i, sfreq=sfreq,
                    n_samples=n_t, montage="test", channel_names=channels, mask=[True] * n_ch,
                    qc=EpochQC(n_flat=0, n_clipped=0, nonfinite=False, max_abs_uv=60.0, valid=True),
                    sleep=EpochStage(stage=None if i == per_subject - 1 else ("W" if cls == "A" else "N3")),
                    annotations=annotations,
                )
                broken = (s, index) == bad
                _add(tar, f"{key}.eeg.npy", b"not a numpy file" * 4 if broken else npy_bytes(arr))
                _add(tar, f"{key}.json", meta.model_dump_json().encode())
                if subj is None:
                    continue  # unlisted
                keys.append(key)
                if broken:
                    ds.bad.append(key)
                    continue
                ds.keys.append(key)
                ds.eeg[key], ds.subject[key], ds.cls[key] = arr, subject, cls
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        shards.append(ManifestShard(url=path.name, sha256=sha, n_samples=len(samples), keys=keys))
    Manifest(
        ephys_version="0.1.0", created_at="2024-01-01T00:00:00Z", query=["test"], montage="test",
        channel_names=channels, sfreq=sfreq, n_samples=n_t, counts={"epochs": len(ds.keys) + len(ds.bad)},
        shards=shards,
    ).save(ds.manifest)
    return ds


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Dataset:
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def hiera_ckpt(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hiera")
    pretrain(data.manifest, out, load_config("cpu-tiny"), run__steps=3, data__batch_size=8)
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def mae_ckpt(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mae")
    config = RunConfig.model_validate({"model": {"arch": "mae"}, "view": {"kind": "raw"},
                                       "optim": {"optimizer": "adamw"}, "run": {"steps": 3},
                                       "data": {"batch_size": 8}})
    pretrain(data.manifest, out, config)
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def hiera_emb(hiera_ckpt, data):
    return embed(hiera_ckpt, data.manifest, batch_size=16)


def _reference(ckpt_path: Path, eeg: np.ndarray) -> np.ndarray:
    """The embedding of epochs ``(B, C, T)``, computed here from the checkpoint's parts."""
    ckpt = read_checkpoint(ckpt_path)
    model = build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    view = make_view(ViewConfig.model_validate(ckpt["config"]["view"]), SFREQ, N_T)
    with torch.no_grad():
        x = view(torch.from_numpy(eeg.astype(np.float32)))
        out = model.encode(x) if ckpt["arch"] == "hiera" else model.embed(x).mean(1)
    return out.numpy()


# ------------------------------------------------------------------------------------------------------- reading


class _Records(logging.Handler):
    """Collects log messages (works without pytest's logging plugin, i.e. under ``-p no:logging``)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_iter_manifest_epochs_in_manifest_order_skipping_bad(data):
    manifest = Manifest.load(data.manifest)
    skipped = Counter()
    logger, records = logging.getLogger("ephys.pretrain.evaluate"), _Records()
    logger.addHandler(records)
    try:
        items = list(iter_manifest_epochs(manifest, data.manifest, skipped))
    finally:
        logger.removeHandler(records)
    assert [k for k, _, _ in items] == data.keys  # every readable selected key once, in manifest order
    assert [k for s in manifest.shards for k in s.keys if k not in data.bad] == data.keys
    for key, meta, eeg in items:
        assert meta["key"] == key and meta["subject"] == data.subject[key]
        assert eeg.dtype == np.float32 and eeg.shape == (N_CH, N_T)
        np.testing.assert_array_equal(eeg, data.eeg[key].astype(np.float32))
    assert skipped == {"undecodable eeg.npy": 1}
    assert len(records.messages) == 1
    assert data.bad[0] in records.messages[0] and "shard-000001.tar" in records.messages[0]


# ---------------------------------------------------------------------------------------------------- embeddings


def test_embed_hiera_shape_order_and_values(data, hiera_ckpt, hiera_emb):
    r = hiera_emb
    assert r.embeddings.dtype == np.float32 and r.embeddings.shape == (len(data.keys), HIERA_DIM)
    assert r.keys == data.keys and [m["key"] for m in r.metas] == data.keys
    assert r.n_skipped == 1 and r.arch == "hiera" and r.step == 3 and not r.random_init
    rows = [0, 7, len(data.keys) - 1]
    expected = _reference(hiera_ckpt, np.stack([data.eeg[data.keys[i]] for i in rows]))
    np.testing.assert_allclose(r.embeddings[rows], expected, rtol=1e-4, atol=1e-5)
    assert np.isfinite(r.embeddings).all()


def test_embed_is_deterministic_and_random_init_differs(data, hiera_ckpt, hiera_emb):
    before = torch.get_rng_state()
    again = embed(hiera_ckpt, data.manifest, batch_size=7)  # another batching, same rows
    np.testing.assert_allclose(again.embeddings, hiera_emb.embeddings, rtol=1e-4, atol=1e-5)
    rand = embed(hiera_ckpt, data.manifest, random_init=True, seed=1)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is left alone
    assert rand.random_init and rand.keys == hiera_emb.keys and rand.embeddings.shape == hiera_emb.embeddings.shape
    assert not np.allclose(rand.embeddings, hiera_emb.embeddings, atol=1e-3)


def test_embed_keeps_the_checkpoints_view_and_says_when_the_manifest_holds_less(data, hiera_ckpt, hiera_emb, caplog):
    """A manifest whose recordings stop at 20 Hz, embedded with a checkpoint whose view reaches 100 Hz: the
    checkpoint's view is used (the same embeddings), and the log says the images differ from the training ones."""
    man = Manifest.load(data.manifest)
    man.lowpass_hz = 20.0
    path = man.save(Path(data.manifest).with_name("manifest-20hz.json"))
    with caplog.at_level(logging.WARNING, logger="ephys.pretrain.evaluate"):
        r = embed(hiera_ckpt, path, batch_size=16)
    assert "no signal above 20 Hz, but the checkpoint's view reaches 100 Hz" in caplog.text
    np.testing.assert_allclose(r.embeddings, hiera_emb.embeddings, rtol=1e-4, atol=1e-5)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ephys.pretrain.evaluate"):
        embed(hiera_ckpt, data.manifest, batch_size=16)
    assert "no signal above" not in caplog.text


def test_embed_mae(data, mae_ckpt):
    r = embed(mae_ckpt, data.manifest, batch_size=7)
    assert r.arch == "mae" and r.embeddings.shape == (len(data.keys), MAE_DIM) and r.keys == data.keys
    rows = [1, len(data.keys) - 2]
    expected = _reference(mae_ckpt, np.stack([data.eeg[data.keys[i]] for i in rows]))
    np.testing.assert_allclose(r.embeddings[rows], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(embed(mae_ckpt, data.manifest, batch_size=7).embeddings, r.embeddings)


def test_write_and_read_embeddings(data, hiera_emb, tmp_path):
    out = tmp_path / "emb.npy"
    npy, side = write_embeddings(hiera_emb, out)
    assert (npy, side) == (out, tmp_path / "emb.keys.json") and sidecar_path(out) == side
    np.testing.assert_array_equal(np.load(out), hiera_emb.embeddings)
    meta = json.loads(side.read_text())
    assert meta["keys"] == data.keys and meta["n"] == len(data.keys) and meta["dim"] == HIERA_DIM
    assert meta["step"] == 3 and meta["arch"] == "hiera" and meta["random_init"] is False
    assert meta["manifest_hash"] == Manifest.load(data.manifest).content_hash
    assert meta["n_skipped"] == 1 and meta["skipped"] == {"undecodable eeg.npy": 1}
    text = out.read_bytes() + side.read_bytes()
    assert not any(s.encode() in text for s in data.subject.values())  # no subject id written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.keys.json", "emb.npy"]  # no temporary left
    array, read_meta = read_embeddings(out)
    np.testing.assert_array_equal(array, hiera_emb.embeddings)
    assert read_meta == meta

    write_embeddings(_first_rows(hiera_emb, 3), tmp_path / "small.npy")
    shutil.copy(tmp_path / "small.npy", out)  # the array of another run beside this sidecar
    with pytest.raises(PretrainError, match="emb.keys.json: the sidecar belongs to another array"):
        read_embeddings(out)
    with pytest.raises(PretrainError, match="output folder does not exist"):
        write_embeddings(hiera_emb, tmp_path / "nope" / "emb.npy")


def _first_rows(r, n):
    from dataclasses import replace

    return replace(r, keys=r.keys[:n], metas=r.metas[:n], embeddings=r.embeddings[:n])


# -------------------------------------------------------------------------------------------------------- labels


def test_labels_from_meta():
    metas = [
        {"sleep": {"stage": "N2"}, "qc": {"valid": True},
         "annotations": [{"category": "seizure", "negated": True}, {"category": None}, {"category": "spike"},
                         {"category": "artifact"}]},
        {"sleep": None, "qc": {"valid": False}, "annotations": [{"category": "seizure", "negated": True}]},
        {"sleep": {"stage": None}, "annotations": []},
    ]
    assert labels_from_meta(metas, "stage") == ["N2", None, None]
    assert labels_from_meta(metas, "category") == ["spike", "none", "none"]
    assert labels_from_meta(metas, "valid") == ["True", "False", None]
    with pytest.raises(PretrainError, match="unknown label 'age'; choose from stage, category, valid"):
        labels_from_meta(metas, "age")


# --------------------------------------------------------------------------------------------------------- probe


def _independent(emb, keys, train_keys, test_keys, y_of):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score
    from sklearn.preprocessing import StandardScaler

    row = {k: i for i, k in enumerate(keys)}
    xtr, xte = emb[[row[k] for k in train_keys]], emb[[row[k] for k in test_keys]]
    ytr, yte = [y_of[k] for k in train_keys], [y_of[k] for k in test_keys]
    scaler = StandardScaler().fit(xtr)
    pred = LogisticRegression(max_iter=1000, class_weight="balanced").fit(scaler.transform(xtr), ytr) \
        .predict(scaler.transform(xte))
    return balanced_accuracy_score(yte, pred), cohen_kappa_score(yte, pred)


def test_probe_matches_an_independent_sklearn_probe(data, hiera_ckpt, hiera_emb):
    from sklearn.model_selection import GroupShuffleSplit

    r = probe(hiera_ckpt, data.manifest, "stage", seed=0)
    stage = {k: ("W" if data.cls[k] == "A" else "N3") for k in data.keys}
    labelled = [k for k, m in zip(hiera_emb.keys, hiera_emb.metas) if m["sleep"]["stage"] is not None]
    assert r.classes == ["N3", "W"] and r.n_unlabelled == len(data.keys) - len(labelled) == 6
    assert r.n_train + r.n_test == len(labelled) and r.n_skipped == 1
    assert (r.n_subjects, r.n_train_subjects, r.n_test_subjects) == (6, 4, 2)
    train_subjects = {data.subject[k] for k in r.train_keys}
    test_subjects = {data.subject[k] for k in r.test_keys}
    assert train_subjects.isdisjoint(test_subjects) and len(test_subjects) == 2
    # the split is GroupShuffleSplit's on the labelled epochs' subjects
    tr, te = next(GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=0)
                  .split(labelled, groups=[data.subject[k] for k in labelled]))
    assert r.train_keys == [labelled[i] for i in tr] and r.test_keys == [labelled[i] for i in te]
    # the scores are those of a probe fitted here on embed()'s output, for both encoders
    rand = embed(hiera_ckpt, data.manifest, random_init=True, seed=0)  # equal scores below: seeded init is repeatable
    for emb, scores in ((hiera_emb.embeddings, r.trained), (rand.embeddings, r.random)):
        bacc, kappa = _independent(emb, data.keys, r.train_keys, r.test_keys, stage)
        assert scores.balanced_accuracy == pytest.approx(bacc, abs=1e-12)
        assert scores.kappa == pytest.approx(kappa, abs=1e-12)
        assert 0.0 <= scores.balanced_accuracy <= 1.0 and -1.0 <= scores.kappa <= 1.0
    assert r.to_dict()["trained"]["balanced_accuracy"] == r.trained.balanced_accuracy
    # Baselines: log band powers (10 Hz vs 2 Hz is what they see) and the majority class (one class for all).
    assert r.band_power.balanced_accuracy == 1.0 and r.band_power.kappa == 1.0
    assert (r.majority.balanced_accuracy, r.majority.kappa) == (0.5, 0.0)
    assert set(r.to_dict()) >= {"band_power", "majority"}


def test_band_powers_against_parseval():
    """A 10 Hz sine of amplitude A has power A**2 / 2, all of it in the alpha band (8-12 Hz)."""
    from ephys.pretrain.evaluate import BANDS, band_powers

    t = np.arange(2500) / 250.0
    x = np.stack([np.stack([20 * np.sin(2 * np.pi * 10 * t), 5 * np.sin(2 * np.pi * 3 * t)])])  # (1, 2, 2500)
    p = 10 ** band_powers(x, 250.0).reshape(2, len(BANDS))
    assert p[0, 3] == pytest.approx(20**2 / 2, rel=0.01) and p[0].sum() == pytest.approx(20**2 / 2, rel=0.01)
    assert p[1, 1] == pytest.approx(5**2 / 2, rel=0.01)


def test_band_power_baseline_stays_below_the_manifests_lowpass_edge():
    """With a 20-Hz edge (a recording sampled at 50 Hz) the bands stop at 20 Hz: 16-30 Hz becomes 16-20 Hz and
    30-45 Hz goes, so the baseline does not tell recordings apart by a band some of them leave empty; a 25-Hz
    sine, above the edge, then falls in no band."""
    from ephys.pretrain.evaluate import BANDS, band_powers, bands_within

    assert bands_within(None) == BANDS and bands_within(100.0) == BANDS
    assert bands_within(20.0) == ((0.5, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 16.0), (16.0, 20.0))
    assert bands_within(40.0)[-1] == (30.0, 40.0) and len(bands_within(40.0)) == 7
    t = np.arange(2500) / 250.0
    x = (20 * np.sin(2 * np.pi * 25 * t))[None, None]  # above the 20-Hz edge
    assert band_powers(x, 250.0, bands_within(20.0)).shape == (1, 6)
    assert 10 ** band_powers(x, 250.0, bands_within(20.0)).max() < 1e-3 * 20**2 / 2


def test_probe_scores_each_encoder_on_its_own_embeddings(data, hiera_ckpt, tmp_path):
    """A checkpoint with all weights zero embeds every epoch as 0: its probe predicts one class (balanced accuracy
    0.5, kappa 0), while the random-init encoder still tells 10 Hz from 2 Hz."""
    ckpt = torch.load(hiera_ckpt, weights_only=True)
    ckpt["model"] = {k: torch.zeros_like(v) for k, v in ckpt["model"].items()}
    torch.save(ckpt, tmp_path / "zero.pt")
    r = probe(tmp_path / "zero.pt", data.manifest, "stage", seed=0)
    assert (r.trained.balanced_accuracy, r.trained.kappa) == (0.5, 0.0)
    assert r.random.balanced_accuracy > 0.5 and r.random.kappa > 0.0


def test_probe_category_on_mae(data, mae_ckpt):
    r = probe(mae_ckpt, data.manifest, "category", seed=3, test_fraction=0.5)
    assert r.classes == ["alpha", "none"] and r.arch == "mae" and r.dim == MAE_DIM
    assert r.n_unlabelled == 0 and r.n_train + r.n_test == len(data.keys)
    assert (r.n_train_subjects, r.n_test_subjects) == (3, 3)
    assert {data.subject[k] for k in r.train_keys}.isdisjoint({data.subject[k] for k in r.test_keys})
    for s in (r.trained, r.random):
        assert 0.0 <= s.balanced_accuracy <= 1.0


def test_probe_cross_validation_over_subjects(data, hiera_ckpt):
    """--folds: GroupKFold over the 6 subjects. Oracle: the corpus's construction (10 Hz vs 2 Hz: log band powers
    separate the classes in every fold; the majority class has kappa 0 by definition)."""
    r = probe(hiera_ckpt, data.manifest, "stage", seed=0, folds=3)
    cv = r.cv
    assert cv["folds"] == 3 and set(cv) == {"folds", "trained", "random", "band_power", "majority"}
    assert cv["band_power"]["kappa"] == [1.0, 1.0, 1.0] and cv["band_power"]["kappa_ci"] == [1.0, 1.0]
    assert cv["majority"]["kappa"] == [0.0, 0.0, 0.0]
    lo, hi = cv["random"]["kappa_ci"]
    assert lo <= cv["random"]["kappa_mean"] <= hi and len(cv["random"]["kappa"]) == 3
    assert r.to_dict()["cv"]["folds"] == 3 and probe(hiera_ckpt, data.manifest, "stage", seed=0).cv is None


def test_probe_with_a_sites_label_file(data, hiera_ckpt, hiera_emb, tmp_path):
    """--labels: a TSV keyed by recording SHA-256 and time; an epoch takes the row holding its midpoint. Oracle:
    the class each epoch was written with (every epoch of the corpus shares one recording hash, so times decide)."""
    from ephys.pretrain.evaluate import read_label_file

    # Epoch i of a subject starts at 10 i s (10-s epochs); write the classes of epochs 0..3 as intervals.
    rows = "".join(f"{'ab' * 32}\t{10 * i}\t10\t{'fast' if i % 2 == 0 else 'slow'}\n" for i in range(3))
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("recording\tonset\tduration\tlabel\n" + rows)
    r = probe(hiera_ckpt, data.manifest, "ignored", labels=tsv, seed=0)
    assert r.label == "file" and r.classes == ["fast", "slow"]
    index = {k: m["epoch_index"] for k, m in zip(hiera_emb.keys, hiera_emb.metas)}
    covered = {k for k in data.keys if index[k] < 3}  # the rows cover epochs 0-2 of each subject, not epoch 3
    assert set(r.train_keys) | set(r.test_keys) == covered and r.n_unlabelled == len(data.keys) - len(covered)
    assert r.band_power.balanced_accuracy == 1.0  # fast = 10 Hz, slow = 2 Hz by construction
    bad = tmp_path / "bad.tsv"
    bad.write_text("recording\tonset\tduration\tlabel\nchb05_06.edf\t0\t1\tx\n")
    with pytest.raises(PretrainError, match="line 2: recording must be a SHA-256"):
        read_label_file(bad)
    with pytest.raises(PretrainError, match="label file cannot be read"):
        read_label_file(tmp_path / "none.tsv")


def test_probe_refuses_unusable_labels_and_splits(data, hiera_ckpt, tmp_path, monkeypatch):
    from sklearn.model_selection import GroupShuffleSplit

    def no_embedding(*args, **kwargs):
        raise AssertionError("a probe that cannot be made must fail before embedding")

    monkeypatch.setattr("ephys.pretrain.evaluate._Encoder.run", no_embedding)

    with pytest.raises(PretrainError, match="unknown label 'age'"):
        probe(hiera_ckpt, data.manifest, "age")
    with pytest.raises(PretrainError, match="test fraction must be in"):
        probe(hiera_ckpt, data.manifest, "stage", test_fraction=1.0)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "sklearn.linear_model", None)  # as if scikit-learn were not installed
        with pytest.raises(PretrainError, match=r"ephys probe needs scikit-learn, a dependency of ephys: reinstall"):
            probe(hiera_ckpt, data.manifest, "stage")
    with pytest.raises(PretrainError, match=r"manifest\.json: label 'valid' has a single class \('True'\)"):
        probe(hiera_ckpt, data.manifest, "valid")
    one = write_dataset(tmp_path / "one", subjects_per_shard=(1,), per_subject=4, bad=None)
    with pytest.raises(PretrainError, match="needs epochs of 2 or more subjects; the labelled epochs come from 1"):
        probe(hiera_ckpt, one.manifest, "category")
    # subject 0 alone has class A: find a seed that holds it out, and the probe refuses to train without class A
    few = write_dataset(tmp_path / "few", subjects_per_shard=(3,), per_subject=2, bad=None, only_b={1, 2})
    groups = [few.subject[k] for k in few.keys]
    a_subject = next(few.subject[k] for k in few.keys if few.cls[k] == "A")
    seed = next(s for s in range(100) if a_subject in {groups[i] for i in next(
        GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=s).split(groups, groups=groups))[1]})
    with pytest.raises(PretrainError, match=r"\['alpha'\] of label 'category' have no epoch among the training"):
        probe(hiera_ckpt, few.manifest, "category", seed=seed)


# -------------------------------------------------------------------------------------------------------- errors


def test_bad_checkpoints_and_mismatched_manifests(data, hiera_ckpt, mae_ckpt, tmp_path):
    with pytest.raises(PretrainError, match=r"nope\.pt: no such checkpoint"):
        embed(tmp_path / "nope.pt", data.manifest)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainError, match=r"junk\.pt: checkpoint cannot be read"):
        embed(junk, data.manifest)
    with pytest.raises(ManifestError, match=r"nope\.json: no such manifest"):
        embed(hiera_ckpt, tmp_path / "nope.json")

    three = write_dataset(tmp_path / "three", subjects_per_shard=(1,), per_subject=2, n_ch=3, bad=None)
    with pytest.raises(CheckpointMismatchError, match=r"model takes inputs \(4, 64, 64\), but the epochs "
                                                      r"\(channels, samples\) \(3, 2500\) .* give \(3, 64, 64\)"):
        embed(hiera_ckpt, three.manifest)
    with pytest.raises(CheckpointMismatchError, match=r"takes inputs \(4, 2500\), .* \(4, 5000\) .* give \(4, 5000\)"):
        embed(mae_ckpt, write_dataset(tmp_path / "long", subjects_per_shard=(1,), per_subject=2, n_t=5000,
                                      bad=None).manifest)
    # same layout, another sampling rate or channel names: refused from the checkpoint's own record of its data,
    # also for a checkpoint moved away from its run folder
    slow = write_dataset(tmp_path / "slow", subjects_per_shard=(1,), per_subject=2, sfreq=200.0, bad=None)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(hiera_ckpt, alone / "checkpoint.pt")
    for ckpt in (hiera_ckpt, alone / "checkpoint.pt"):
        with pytest.raises(CheckpointMismatchError, match=r"trained on epochs at 250 Hz, .* has 200 Hz"):
            embed(ckpt, slow.manifest)


# ----------------------------------------------------------------------------------------------------------- CLI


def test_cli_embed_and_probe(data, hiera_ckpt, mae_ckpt, tmp_path):
    from ephys.cli import _register, app

    _register()
    runner = CliRunner()
    out = tmp_path / "emb.npy"
    result = runner.invoke(app, ["embed", "--checkpoint", str(hiera_ckpt), "--manifest", str(data.manifest),
                                 "-o", str(out), "--batch-size", "16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{len(data.keys)} epochs x {HIERA_DIM} dims (hiera, step 3, 1 bad samples")
    assert str(out) in result.stdout
    assert np.load(out).shape == (len(data.keys), HIERA_DIM)
    assert json.loads(sidecar_path(out).read_text())["keys"] == data.keys

    args = ["probe", "--checkpoint", str(mae_ckpt), "--manifest", str(data.manifest), "--label", "stage"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("probe of 'stage' (2 classes: N3, W): ")
    assert lines[1].split() == ["encoder", "balanced", "accuracy", "kappa"]
    assert lines[2].startswith("trained (step 3)") and lines[3].startswith("random init")
    result = runner.invoke(app, args + ["--json", "--seed", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["classes"] == ["N3", "W"] and set(report["trained"]) == {"balanced_accuracy", "kappa"}
    assert f"{report['trained']['balanced_accuracy']:.3f}" in lines[2]
    assert "train_keys" not in report
    assert not any(s in result.stdout + lines[0] for s in data.subject.values())  # no subject id shown
    assert lines[4].startswith("log band powers (7)") and lines[5].startswith("majority class")
    result = runner.invoke(app, args + ["--folds", "3"])
    assert result.exit_code == 0, result.output
    assert "3-fold cross-validation over subjects (mean, 95 % interval):" in result.stdout
    result = runner.invoke(app, args[:-2])  # neither --label nor --labels
    assert result.exit_code == 2 and "give --label or --labels" in result.stderr

    for bad_args, message in (
        (["embed", "--checkpoint", str(tmp_path / "nope.pt"), "--manifest", str(data.manifest), "-o", str(out)],
         "no such checkpoint"),
        (args[:-1] + ["age"], "unknown label 'age'"),
        (args[:-1] + ["valid"], "single class"),
    ):
        result = runner.invoke(app, bad_args)
        assert result.exit_code == 2, result.output
        last = result.stderr.splitlines()[-1]  # warnings about the bad sample may come first
        assert last.startswith("error: ") and message in last
        assert "Traceback" not in result.output
