"""Pretraining views (ephys.pretrain.views) and the flash-eeg behaviour they rely on or avoid.

* spectrogram view: shape/dtype/range, per-image min-max normalisation, equality with a direct
  ``flash_eeg.spectrogram`` call (parameters passed through), frequency rows (log 1..30 Hz then linear
  30..100 Hz, row 0 = lowest frequency), time columns, gain invariance, the µV-vs-volts change,
  batch independence, autocast;
* ``within``: the top row capped at a low-pass edge, and why (the EEG rows of a recording sampled at 50 Hz);
* raw view: values, shape, float16 upcast;
* config and signal validation (breakpoint, extra keys, Nyquist, n_fft, input_shape, 2-D input);
* flash-eeg 0.4.1 defects that ephys avoids by not using its WPLI connectivity: only the first ``n_fft``
  samples are read, and set-up solves a dense ``T x T`` float64 eigenproblem.  If a flash-eeg upgrade fixes
  them these tests fail, which is the point: revisit the module docstring then.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import flash_eeg
import flash_eeg.transforms
from ephys.pretrain.views import View, ViewConfig, make_view

SFREQ = 250.0
T = 7500  # 30 s at 250 Hz


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny CPU tensors: one intra-op thread


def _noise(shape, seed: int, sd: float = 10.0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0.0, sd, shape).astype(np.float32))


def _sine(freq_hz: float, amp_uv: float = 50.0, seed: int = 0, noise_uv: float = 1.0) -> torch.Tensor:
    """(1, 1, T) µV: a sinusoid plus a little white noise (so no STFT bin sits on the dB floor)."""
    t = np.arange(T) / SFREQ
    x = amp_uv * np.sin(2 * np.pi * freq_hz * t) + np.random.default_rng(seed).normal(0.0, noise_uv, T)
    return torch.from_numpy(x.astype(np.float32))[None, None]


def _row_frequencies(size: int, fmin=1.0, fbp=30.0, fmax=100.0) -> np.ndarray:
    """Frequency of each image row as flash-eeg documents it: positions linspace(0, 2, size); below 1
    log-spaced fmin..fbp, from 1 linear fbp..fmax.  Row 0 is the lowest frequency."""
    s = np.linspace(0.0, 2.0, size)
    return np.where(s < 1.0, fmin * (fbp / fmin) ** s, fbp + (s - 1.0) * (fmax - fbp))


SPEC = make_view(ViewConfig(), SFREQ, T)


# --- spectrogram view -------------------------------------------------------------------------------------


def test_spectrogram_shape_dtype_range():
    x = _noise((3, 4, T), seed=0)
    img = SPEC(x)
    assert img.shape == (3, 4, 224, 224)
    assert img.dtype == torch.float32
    assert img.device == x.device
    assert torch.isfinite(img).all()
    assert img.min() >= 0.0 and img.max() <= 1.0
    # Min-max is applied to the 224 x 59 (rows x STFT frames) image *before* the bilinear resize of the time
    # axis to 224 columns, so the final per-image min is not exactly 0 (interpolation between the minimum
    # and a neighbour); it stays close to the ends of [0, 1].
    flat = img.flatten(2)
    assert (flat.amin(-1) < 0.1).all()
    assert (flat.amax(-1) > 0.99).all()


def test_spectrogram_per_image_min_max_normalisation():
    """With image_size = 59 = the number of STFT frames of a 30-s epoch (centred, hop 128), the resize is the
    identity, so the per-(epoch, channel) min-max is visible exactly: min 0, max 1 (up to the 1e-8 guard)."""
    assert 1 + T // 128 == 59
    view = make_view(ViewConfig(image_size=59), SFREQ, T)
    x = _noise((2, 3, T), seed=1)
    x[1, 2] *= 1000.0  # a channel with a very different gain is normalised on its own
    flat = view(x).flatten(2)
    assert flat.shape == (2, 3, 59 * 59)
    assert (flat.amin(-1) == 0.0).all()
    torch.testing.assert_close(flat.amax(-1), torch.ones(2, 3), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "cfg",
    [
        ViewConfig(),
        ViewConfig(image_size=64, n_fft=512, hop_length=64, freq_min_hz=2.0, freq_max_hz=90.0, freq_breakpoint_hz=20.0),
    ],
    ids=["default", "custom"],
)
def test_spectrogram_equals_direct_flash_eeg_call(cfg):
    x = _noise((2, 3, T), seed=2)
    got = make_view(cfg, SFREQ, T)(x)
    want = flash_eeg.spectrogram(
        x, sfreq=SFREQ, n_fft=cfg.n_fft, hop_length=cfg.hop_length, freq_min=cfg.freq_min_hz,
        freq_max=cfg.freq_max_hz, freq_breakpoint=cfg.freq_breakpoint_hz, n_freqs_out=cfg.image_size,
        output_size=cfg.image_size, output="image", compile=False,
    )
    assert got.shape == (2, 3, cfg.image_size, cfg.image_size)
    assert torch.equal(got, want)


def test_a_view_within_the_lowpass_edge_makes_the_eeg_rows_independent_of_an_empty_band():
    """The same 1/f EEG with and without its content above 20 Hz (a recording sampled at 50 Hz, low-passed at
    0.4 x sfreq by ingest; SciPy Butterworth here): with the top row at 100 Hz the per-image min-max is set by the
    empty band and the rows below 15 Hz differ by ~0.15 on average; a view within the 20-Hz edge gives alike
    rows."""
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(0)
    spec = np.fft.rfft(rng.standard_normal(T))
    f = np.fft.rfftfreq(T, 1 / SFREQ)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    full = np.fft.irfft(spec, T)
    full = 20.0 * full / full.std()
    low = sosfiltfilt(butter(8, 20.0, fs=SFREQ, output="sos"), full)
    x = torch.from_numpy(np.stack([full, low])[:, None].astype(np.float32))

    def eeg_rows_gap(cfg):
        rows = torch.from_numpy(_row_frequencies(64, cfg.freq_min_hz, cfg.freq_breakpoint_hz, cfg.freq_max_hz) < 15.0)
        img = make_view(cfg, SFREQ, T)(x)
        return (img[0, 0] - img[1, 0])[rows].abs().mean().item()

    cfg = ViewConfig(image_size=64)
    assert eeg_rows_gap(cfg) > 0.1
    assert eeg_rows_gap(cfg.within(20.0)) < 0.01


def test_within_caps_the_top_row_at_the_edge():
    spec = ViewConfig(image_size=64)
    assert spec.within(20.0).model_dump(include={"freq_max_hz", "freq_breakpoint_hz"}) == {
        "freq_max_hz": 20.0, "freq_breakpoint_hz": 10.0}  # the breakpoint no longer fits: half the band
    assert spec.within(40.0).model_dump(include={"freq_max_hz", "freq_breakpoint_hz"}) == {
        "freq_max_hz": 40.0, "freq_breakpoint_hz": 30.0}
    assert spec.within(40.0).image_size == 64
    for unchanged in (spec.within(100.0), spec.within(150.0), spec.within(None), spec.within(1.5)):
        assert unchanged is spec  # inside the band already, no edge known, or no band left above freq_min_hz
    raw = ViewConfig(kind="raw")
    assert raw.within(20.0) is raw


def _peak_row(freq_hz: float) -> int:
    return int(SPEC(_sine(freq_hz)).mean(-1)[0, 0].argmax())


@pytest.mark.parametrize("freq_hz", [5.0, 10.0, 20.0, 50.0])
def test_spectrogram_peak_row_matches_row_mapping(freq_hz):
    expected = int(np.abs(_row_frequencies(224) - freq_hz).argmin())
    assert abs(_peak_row(freq_hz) - expected) <= 3


def test_spectrogram_row_order_low_frequency_first():
    r10, r20 = _peak_row(10.0), _peak_row(20.0)
    assert r10 != r20
    assert r10 < r20  # row 0 is 1 Hz, the last row 100 Hz (not flipped as in a plotted image)
    # 10 Hz sits in the log-spaced half: row ~75 of 224 (1 Hz at row 0, 30 Hz at row ~111)
    assert abs(r10 - 75) <= 3


def test_spectrogram_columns_are_time():
    """A 10 Hz burst in the second half of the epoch lights the right half of its row."""
    t = np.arange(T) / SFREQ
    x = _sine(10.0, amp_uv=0.0)  # noise only
    x[0, 0] += torch.from_numpy((50 * np.sin(2 * np.pi * 10 * t) * (t >= 15.0)).astype(np.float32))
    row = SPEC(x)[0, 0, _peak_row(10.0)]
    assert row[130:].mean() > row[:94].mean() + 0.3


def test_spectrogram_gain_invariance():
    """Per-image min-max: a channel's gain does not show (x, 10 x, x / 10 give the same image).  The residue,
    ~1e-4 at worst, is float32 rounding in the lowest-power STFT bins, not a level dependence."""
    x = _noise((2, 3, T), seed=3)
    img = SPEC(x)
    for gain in (10.0, 0.1):
        other = SPEC(x * gain)
        torch.testing.assert_close(other, img, atol=5e-4, rtol=0)
        assert (other - img).abs().mean() < 1e-5


def test_spectrogram_microvolts_vs_volts_differ():
    """The same epoch in volts (x 1e-6) brings the power near the 1e-10 floor of the dB: the image changes,
    which is why the view must be fed µV."""
    x = _noise((2, 3, T), seed=3)
    diff = (SPEC(x) - SPEC(x * 1e-6)).abs()
    assert diff.max() > 0.05
    assert (diff.flatten(2).amax(-1) > 0.05).all()  # every channel, not one outlier


def test_spectrogram_batch_is_independent():
    x = torch.cat([_sine(10.0, seed=4), _noise((1, 1, T), seed=5), _sine(20.0, amp_uv=5.0, seed=6)], dim=1)
    x = torch.cat([x, 3.0 * x.flip(1)], dim=0)  # (2, 3, T)
    batched = SPEC(x)
    for b in range(2):
        alone = SPEC(x[b : b + 1])
        torch.testing.assert_close(batched[b : b + 1], alone, atol=1e-5, rtol=0)
        for c in range(3):
            torch.testing.assert_close(batched[b : b + 1, c : c + 1], SPEC(x[b : b + 1, c : c + 1]), atol=1e-5, rtol=0)


def test_spectrogram_under_autocast_is_float32_and_unchanged():
    x = _noise((2, 2, T), seed=7)
    plain = SPEC(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = SPEC(x)
    assert auto.dtype == torch.float32
    assert torch.equal(auto, plain)


def test_spectrogram_accepts_half_input():
    x = _noise((1, 2, T), seed=8).half()
    img = SPEC(x)
    assert img.dtype == torch.float32
    assert torch.equal(img, SPEC(x.float()))


# --- raw view ---------------------------------------------------------------------------------------------


def test_raw_view_values_and_dtype():
    view = make_view(ViewConfig(kind="raw"), SFREQ, T)
    x = _noise((2, 3, T), seed=9)
    out = view(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(out, x)
    x16 = x.half()
    out16 = view(x16)
    assert out16.dtype == torch.float32 and out16.shape == x.shape
    assert torch.equal(out16, x16.float())


def test_raw_view_skips_spectrogram_checks():
    """Raw has no STFT, so make_view skips the Nyquist and n_fft checks (a 100-sample epoch is fine)."""
    view = make_view(ViewConfig(kind="raw", freq_max_hz=150.0, n_fft=8192), SFREQ, 100)
    assert torch.equal(view(torch.ones(1, 1, 100)), torch.ones(1, 1, 100))


# --- validation -------------------------------------------------------------------------------------------


def test_config_breakpoint_must_be_inside_band():
    with pytest.raises(ValidationError, match="freq_breakpoint_hz"):
        ViewConfig(freq_max_hz=20.0)
    with pytest.raises(ValidationError):
        ViewConfig(freq_min_hz=40.0)


def test_config_rejects_unknown_key_and_bad_values():
    with pytest.raises(ValidationError):
        ViewConfig(foo=1)
    with pytest.raises(ValidationError):
        ViewConfig(hop_length=2048)  # hop > n_fft
    with pytest.raises(ValidationError):
        ViewConfig(image_size=0)


def test_config_has_no_connectivity_kind():
    with pytest.raises(ValidationError):
        ViewConfig(kind="connectivity")


def test_make_view_rejects_above_nyquist():
    with pytest.raises(ValueError, match="Nyquist"):
        make_view(ViewConfig(freq_max_hz=150.0), SFREQ, T)
    make_view(ViewConfig(freq_max_hz=125.0), SFREQ, T)  # exactly Nyquist is allowed


def test_make_view_rejects_window_longer_than_epoch():
    with pytest.raises(ValueError, match="n_fft"):
        make_view(ViewConfig(n_fft=8192), SFREQ, T)


def test_input_shape():
    assert ViewConfig().input_shape(8, T) == (8, 224, 224)
    assert ViewConfig(image_size=96).input_shape(8, T) == (8, 96, 96)
    assert ViewConfig(kind="raw").input_shape(8, T) == (8, T)
    assert SPEC(_noise((1, 8, T), seed=10)).shape[1:] == ViewConfig().input_shape(8, T)


@pytest.mark.parametrize("kind", ["spectrogram", "raw"])
def test_view_rejects_non_3d_input(kind):
    view = View(ViewConfig(kind=kind), SFREQ)
    with pytest.raises(ValueError, match=r"\(B, C, T\)"):
        view(torch.zeros(3, T))
    with pytest.raises(ValueError):
        view(torch.zeros(1, 1, 3, T))


# --- flash-eeg connectivity defects (why ephys does not use it) ---------------------------------------------


def test_flash_eeg_wpli_reads_only_first_n_fft_samples():
    n, n_fft = 1024, 512
    rng = np.random.default_rng(11)
    x = torch.from_numpy(rng.normal(0.0, 10.0, (2, 4, n)).astype(np.float32))
    base = flash_eeg.connectivity(x, sfreq=SFREQ, n_fft=n_fft, compile=False)
    assert base.shape == (2, 1, 224, 224)

    tail = x.clone()
    tail[..., n_fft:] = torch.from_numpy(rng.normal(0.0, 10.0, (2, 4, n - n_fft)).astype(np.float32))
    assert not torch.equal(tail, x)
    assert torch.equal(flash_eeg.connectivity(tail, sfreq=SFREQ, n_fft=n_fft, compile=False), base)

    head = x.clone()
    head[..., 100] += 1000.0
    assert not torch.equal(flash_eeg.connectivity(head, sfreq=SFREQ, n_fft=n_fft, compile=False), base)


def test_flash_eeg_wpli_setup_solves_dense_float64_eigenproblem(monkeypatch):
    calls: list[tuple[tuple[int, ...], torch.dtype]] = []
    original = torch.linalg.eigh

    def recording_eigh(a, *args, **kwargs):
        calls.append((tuple(a.shape), a.dtype))
        return original(a, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", recording_eigh)

    module = flash_eeg.transforms.ConnectivityWPLI(n_samples=1024, n_channels=4, device="cpu")
    assert calls == [((1024, 1024), torch.float64)]
    assert module.tapers.shape == (3, 1024)  # tapers span the whole epoch, the FFT reads n_fft of it

    # The functional API builds the same module once per shape; clear the cache so it cannot hide the call.
    calls.clear()
    flash_eeg.clear_cache()
    x = _noise((1, 4, 1024), seed=12)
    flash_eeg.connectivity(x, compile=False)
    assert calls == [((1024, 1024), torch.float64)]
    flash_eeg.connectivity(x, compile=False)
    assert len(calls) == 1  # cached: no second eigh
    flash_eeg.clear_cache()  # drop the module built while eigh was patched
