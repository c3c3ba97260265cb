"""The synthetic sleep-like benchmark of issue #20 (benchmarks/probe_synthetic.py) is what it says: deterministic,
loadable by ephys's own readers, and its classes differ where the docstring says they do (SciPy Welch as the
oracle). The probe figures themselves are in docs/benchmarks.md (minutes of training: not a test)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy.signal import welch

from tests.ingest_helpers import benchmark


@pytest.fixture(scope="module")
def bench():
    return benchmark("probe_synthetic")


def _band(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    f, p = welch(x, fs=250.0, nperseg=1024)
    return p[..., (f >= lo) & (f < hi)].mean(axis=-1)


def test_corpus_is_deterministic_and_reads_back(bench, tmp_path):
    from ephys.data import EpochDataset

    a = bench.write_corpus(tmp_path / "a", 4, 6, seed=3)
    b = bench.write_corpus(tmp_path / "b", 4, 6, seed=3)
    digest = lambda m: [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(m.parent.glob("shards/*.tar"))]  # noqa: E731
    assert digest(a) == digest(b)
    ds = EpochDataset(a, label="stage")
    assert len(ds) == 24 and set(ds.classes) <= set(bench.STAGES)
    x, y, meta = ds[0]
    assert tuple(x.shape) == (8, 7500) and str(x.dtype) == "torch.float32" and meta["montage"] == "regional8"
    assert len({m["subject"] for m in (ds[i][2] for i in range(len(ds)))}) == 4


def test_stages_differ_where_the_docstring_says(bench):
    from ephys.ingest.montage import REGION_NAMES

    rng = np.random.default_rng(0)
    occ, frontal = REGION_NAMES.index("occipital"), REGION_NAMES.index("L-frontal")
    w = np.stack([bench.epoch(rng, "W", 1.0, 10.0, REGION_NAMES) for _ in range(5)])
    n3 = np.stack([bench.epoch(rng, "N3", 1.0, 10.0, REGION_NAMES) for _ in range(5)])
    n2 = np.stack([bench.epoch(rng, "N2", 1.0, 10.0, REGION_NAMES) for _ in range(5)])
    n1 = np.stack([bench.epoch(rng, "N1", 1.0, 10.0, REGION_NAMES) for _ in range(5)])
    assert np.all(_band(w[:, occ], 8, 12) > 3 * _band(n3[:, occ], 8, 12))  # occipital alpha in W
    assert np.all(_band(n3[:, frontal], 0.5, 2) > 10 * _band(w[:, frontal], 0.5, 2))  # frontal delta in N3
    assert _band(n2[:, REGION_NAMES.index("L-central")], 12, 14).mean() > 2 * _band(
        n1[:, REGION_NAMES.index("L-central")], 12, 14).mean()  # spindles (sigma) in N2
    assert np.allclose(bench.epoch(np.random.default_rng(1), "N2", 2.0, 10.0, REGION_NAMES),
                       2 * bench.epoch(np.random.default_rng(1), "N2", 1.0, 10.0, REGION_NAMES), rtol=1e-5, atol=1e-4)


def test_single_channel_corpus_is_one_native_cz_row(bench, tmp_path):
    # The DREAMS-like layout (one EEG derivation per recording): one row, the native montage, and the manifest
    # says so; its W epochs still carry alpha and its N3 epochs delta (SciPy Welch).
    from ephys.data import EpochDataset
    from ephys.schemas.manifest import Manifest

    path = bench.write_corpus(tmp_path / "c", 3, 20, seed=2, single=True)
    m = Manifest.load(path)
    assert (m.montage, m.channel_names, m.counts["epochs"]) == ("native", ["Cz"], 60)
    ds = EpochDataset(path, label="stage")
    rows = [ds[i] for i in range(len(ds))]
    assert {tuple(x.shape) for x, _, _ in rows} == {(1, 7500)} and {r[2]["montage"] for r in rows} == {"native"}
    by = {s: np.stack([x[0].numpy() for x, y, _ in rows if ds.classes[y] == s]) for s in ("W", "N3")}
    assert _band(by["W"], 8, 12).mean() > 3 * _band(by["N3"], 8, 12).mean()
    assert _band(by["N3"], 0.5, 2).mean() > 10 * _band(by["W"], 0.5, 2).mean()


def test_subjects_recorded_at_lower_rates_lose_their_band_above_the_edge(bench, tmp_path):
    # --source-sfreq 50,250: the first subject as ingest leaves a 50-Hz recording (nothing above its 20-Hz edge),
    # the second untouched (the same samples as without the option); the manifest's lowpass_hz is the lower edge,
    # as `ephys manifest create` writes it.
    from ephys.data import EpochDataset
    from ephys.schemas.manifest import Manifest

    plain = bench.write_corpus(tmp_path / "p", 2, 10, seed=4, single=True)
    mixed = bench.write_corpus(tmp_path / "m", 2, 10, seed=4, single=True, source_sfreq=(50.0, 250.0))
    assert Manifest.load(mixed).lowpass_hz == 20.0 and Manifest.load(plain).lowpass_hz is None
    a, b = EpochDataset(plain), EpochDataset(mixed)
    subj = lambda ds, k: np.stack([ds[i][0][0].numpy() for i in range(len(ds)) if ds[i][2]["subject"] == k])  # noqa: E731
    s0, s1 = (f"sub-{s:016x}" for s in (0, 1))
    assert _band(subj(b, s0), 25, 100).mean() < 1e-3 * _band(subj(a, s0), 25, 100).mean()  # gone above the edge
    np.testing.assert_allclose(_band(subj(b, s0), 2, 15), _band(subj(a, s0), 2, 15), rtol=0.1)  # kept below it
    np.testing.assert_array_equal(subj(b, s1), subj(a, s1))  # the 250-Hz subject is untouched
