"""QA/QC figures, bad channels and the quality score: known defects injected into real EEG are caught,
clean real recordings are not flagged, and the figures reach shards and catalog."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from ephys.ingest.readers import open_recording
from ephys.pipeline.run import ingest
from ephys.pipeline.task import select_channels
from ephys.qc.features import segment_features
from ephys.qc.epochs import rails_uv
from ephys.qc.features import Thresholds, bad_channels, epoch_scores, usable
from ephys.schemas import IngestConfig
from ephys.ingest.writers.edf import write_edf
from tests.ingest_helpers import REAL, rows_by_sha, sha

pytestmark = pytest.mark.skipif(not REAL.exists(), reason="../shared/data/real is not present")
NATIVE = IngestConfig(montage="native", min_epochs=1)


def _load(rel: str):
    r = open_recording(REAL / rel, "bdf" if rel.endswith(".bdf") else "edf")
    try:
        picked, _, _ = select_channels(r.header.channels, NATIVE, rel)
        return picked, r.read_channels([c.index for c in picked]), r.header.duration_s
    finally:
        r.close()


def _figures(picked, signals, duration_s):
    f = segment_features(picked, signals, duration_s, NATIVE)
    bad = bad_channels(f)
    return f, {picked[i].name: why for i, why in bad.items()}, epoch_scores(f, bad, Thresholds())


@pytest.mark.parametrize("rel", ["eegmmidb/S001R03.edf", "dreams-sleep/excerpt3.edf", "sleep-edf/short_psg.edf"])
def test_clean_real_recordings_are_not_flagged(rel):
    f, bad, score = _figures(*_load(rel))
    assert bad == {}
    assert score.mean() >= 0.9 and score.min() >= 0.5
    assert not f.flat.any() and not f.clipped.any() and not f.nonfinite.any()


@pytest.fixture(scope="module")
def injected():
    """S001R03 (64 channels, 160 Hz, 4 epochs) with four defects, each on its own channel."""
    picked, signals, dur = _load("eegmmidb/S001R03.edf")
    names = [c.name for c in picked]
    x = [s.copy() for s in signals]
    sf = picked[0].sfreq
    t = np.arange(x[0].size) / sf
    rng = np.random.default_rng(7)
    x[names.index("C3")][:] = 3.0  # a flat channel (amplifier input shorted)
    cz, hi = names.index("Cz"), rails_uv(picked[names.index("Cz")])[1]
    burst = slice(int(35 * sf), int(40 * sf))  # a clipped 5-s burst in epoch 1
    x[cz][burst] = hi
    o1 = names.index("O1")
    x[o1] = x[o1] + 150 * np.sin(2 * np.pi * 50 * t)  # 50 Hz hum on one electrode (bad contact)
    t8 = names.index("T8")  # a disconnected electrode: a wandering, hum-laden open input
    x[t8] = np.cumsum(rng.normal(0, 8, t.size)).astype(np.float32) + 40 * np.sin(2 * np.pi * 50 * t)
    return picked, names, _figures(picked, x, dur), _figures(picked, signals, dur)[2]


def test_injected_defects_are_caught(injected):
    picked, names, (f, bad, score), clean_score = injected
    assert bad["C3"] == "flat"
    assert bad["O1"] == "noisy: line noise"
    assert bad["T8"] in ("uncorrelated", "noisy: amplitude", "noisy: line noise")
    assert "Cz" not in bad  # a burst is an epoch defect, not a bad channel
    cz = names.index("Cz")
    assert f.clipped[cz].tolist() == [False, True, False, False]
    assert f.line_ratio[names.index("O1")].min() > 0.5 > np.nanmedian(f.line_ratio)
    assert set(bad) == {"C3", "O1", "T8"}  # the 60 other channels stay good
    ok = usable(f, {names.index(n): w for n, w in bad.items()}, Thresholds())
    assert not ok[cz, 1] and ok[cz, [0, 2, 3]].all()
    # Each bad channel costs every epoch 1/64 of its score (unless it already failed there); the burst one more.
    assert all(clean_score[k] - 3 / 64 - 1e-6 <= score[k] < clean_score[k] - 1 / 64 for k in (0, 2, 3))
    assert score[1] <= clean_score[1] - 4 / 64 + 1e-6


def test_disconnected_electrode_alone_is_uncorrelated():
    picked, signals, dur = _load("eegmmidb/S001R03.edf")
    names = [c.name for c in picked]
    x = [s.copy() for s in signals]
    rng = np.random.default_rng(3)
    noise = np.convolve(rng.normal(0, 40, x[0].size), np.ones(10) / 10, mode="same")  # EEG-sized, below 16 Hz
    x[names.index("P4")] = noise.astype(np.float32)  # an open input picking up nothing its neighbours see
    f, bad, _ = _figures(picked, x, dur)
    assert bad == {"P4": "uncorrelated"}


def _edf_with(tmp_path, flat: list[str], hum: list[str] = ()):
    """A 3-min 10-20 EDF sharing a common rhythm (as volume conduction does), some channels flat or humming."""
    from ephys.ingest.channels import TEN_TWENTY

    sf, n = 256, 180 * 256
    t = np.arange(n) / sf
    rng = np.random.default_rng(5)
    common = np.convolve(rng.normal(0, 30, n), np.ones(20) / 20, mode="same") + 20 * np.sin(2 * np.pi * 10 * t)
    sig = []
    for e in TEN_TWENTY:
        x = common + rng.normal(0, 3, n)
        if e in flat:
            x = np.zeros(n)
        if e in hum:
            x = x + 200 * np.sin(2 * np.pi * 50 * t)
        sig.append(x)
    return write_edf(tmp_path / "a" / "rec.edf", sig, [f"EEG {e}" for e in TEN_TWENTY], [sf] * 19) if \
        (tmp_path / "a").mkdir(exist_ok=True) is None else None


def test_bad_channels_leave_the_shards_and_verdicts_are_stored(tmp_path):
    path = _edf_with(tmp_path, flat=["O1", "Fp1"], hum=["T7"])
    out = tmp_path / "out"
    ingest(tmp_path / "a", out, config=NATIVE, workers=1)
    row = rows_by_sha(f"sqlite:///{out / 'catalog.sqlite'}")[sha(path)]
    assert row.status == "ok" and row.n_bad_channels == 3
    assert json.loads(row.bad_channels_json) == {"Fp1": "flat", "T7": "noisy: line noise", "O1": "flat"}
    with tarfile.open(next((out / "shards").glob("*.tar"))) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    meta = json.loads(next(v for k, v in members.items() if k.endswith("_000001.json")))
    x = np.load(__import__("io").BytesIO(next(v for k, v in members.items() if k.endswith("_000001.eeg.npy"))))
    names = meta["channel_names"]
    for e in ("Fp1", "O1", "T7"):
        i = names.index(e)
        assert not meta["mask"][i] and not meta["channel_usable"][i] and not x[i].any()
    assert meta["mask"].count(True) == 16 and abs(meta["qc"]["score"] - 16 / 19) < 1e-3
    assert meta["bad_channels"]["T7"] == "noisy: line noise" and meta["qc_channels"] == names
    assert meta["channel_qc"]["line_ratio"][names.index("T7")] > 0.5
    assert meta["channel_qc"]["sd_uv"][names.index("Fp1")] == 0.0


def test_every_channel_flat_is_rejected_with_its_reason(tmp_path):
    from ephys.ingest.channels import TEN_TWENTY

    path = _edf_with(tmp_path, flat=list(TEN_TWENTY))
    out = tmp_path / "out"
    s = ingest(tmp_path / "a", out, config=NATIVE, workers=1)
    row = rows_by_sha(f"sqlite:///{out / 'catalog.sqlite'}")[sha(path)]
    assert (s.n_rejected, row.status, row.failure_code) == (1, "rejected", "no_usable_channels")
    assert row.failure_reason == "no usable EEG channel: all 19 are bad (flat)"


def test_too_few_good_electrodes_for_regional8(tmp_path):
    path = _edf_with(tmp_path, flat=["Fp1", "F3", "F7", "Fp2", "F4", "F8", "O1", "O2"])  # frontal and occipital gone
    out = tmp_path / "out"
    ingest(tmp_path / "a", out, config=IngestConfig(min_epochs=1), workers=1)
    row = rows_by_sha(f"sqlite:///{out / 'catalog.sqlite'}")[sha(path)]
    assert row.failure_code == "insufficient_coverage"
    assert "after excluding bad channels (Fp1 flat, Fp2 flat, F7 flat" in row.failure_reason and "5 of 8 regions" in row.failure_reason


def test_catalog_queries_rethreshold_on_stored_figures(tmp_path):
    from ephys.catalog.queries import query_recordings, select_epochs

    _edf_with(tmp_path, flat=["O1"])
    out = tmp_path / "out"
    ingest(tmp_path / "a", out, config=NATIVE, workers=1)
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    epochs = select_epochs(url, ["score >= 0.9"])
    assert len(epochs) == 6  # 18 of 19 channels usable: 0.947
    assert select_epochs(url, ["score >= 0.99"]) == []
    assert len(select_epochs(url, ["max_ptp_uv < 400", "line_ratio < 0.1"])) == 6
    assert [r["n_bad_channels"] for r in query_recordings(url, ["n_bad_channels = 1"])] == [1]


def _band_ratio(f: np.ndarray, p: np.ndarray, num: tuple[float, float], den: tuple[float, float]) -> np.ndarray:
    """Power in ``num`` over power in ``den`` (inclusive bands, Hz) of PSDs ``p`` (..., n_freqs)."""
    n = p[..., (f >= num[0]) & (f <= num[1])].sum(axis=-1)
    d = p[..., (f >= den[0]) & (f <= den[1])].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, n / d, np.nan)


@pytest.mark.parametrize("sfreq", [100.0, 160.0, 200.0, 256.0, 512.0])
def test_spectral_ratios_and_kurtosis_equal_scipy(sfreq):
    """The float32 strided Welch gives SciPy's Welch band ratios; the kurtosis SciPy's."""
    from scipy import signal, stats

    from ephys.qc.features import excess_kurtosis, spectral_ratios

    rng = np.random.default_rng(5)
    n = int(30 * sfreq)
    t = np.arange(n) / sfreq
    ep = (rng.normal(0, 20, (40, n)) + 10 * np.sin(2 * np.pi * 50 * t) + np.cumsum(rng.normal(0, 1, (40, n)), axis=1)
          + 40 * rng.standard_t(3, (40, n)) * (rng.random((40, 1)) < 0.3)).astype(np.float32)
    ep[3, 100] = np.nan
    got = spectral_ratios(ep, sfreq, 50.0)
    x = np.nan_to_num(ep.astype(np.float64))
    f, p = signal.welch(x, fs=sfreq, nperseg=int(10 * sfreq), axis=-1)
    hf = min(100.0, 0.45 * sfreq)
    want = [_band_ratio(f, p, (49.0, 51.0), (1.0, hf)) if 51 < hf else np.full(40, np.nan),
            _band_ratio(f, p, (30.0, hf), (1.0, hf)), _band_ratio(f, p, (1e-9, 0.3), (1e-9, hf))]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, equal_nan=True)
    assert np.isnan(got[0]).all() == (sfreq < 120)
    xd = ep[:, :4000].astype(np.float32)
    xd = np.nan_to_num(xd)
    np.testing.assert_allclose(excess_kurtosis(xd), stats.kurtosis(xd, axis=1, fisher=True, bias=True), rtol=1e-4, atol=1e-5)
    assert excess_kurtosis(np.ones((2, 50), np.float32)).tolist() == [0.0, 0.0]
