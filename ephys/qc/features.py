"""QA/QC figures per channel and 30-s epoch, bad channels per recording, and the epoch quality score.

All figures are computed on the raw (unfiltered) signal in µV at the channel's
own sampling rate, before conditioning, so they describe the recording as it
was acquired.

Per channel and epoch (arrays of shape ``(n_channels, n_epochs)``):

* ``sd_uv``: standard deviation (µV); flat when below ``flat_uv`` (0.5 µV).
* ``ptp_uv``: peak-to-peak amplitude (µV) after removing the epoch's linear trend.
* ``clipped``: more than ``clip_fraction`` of samples at the ADC rails.
* ``nonfinite``: any NaN/inf sample.
* ``kurtosis``: excess kurtosis (Fisher; 0 for a Gaussian) of the detrended epoch. Large values mark
  spiky artifacts (electrode pops) and also epileptiform transients.
* ``line_ratio``: Welch power within ±1 Hz of the mains frequency over power
  in 1 Hz–``hf`` (``hf`` = min(100 Hz, 0.45 × sfreq)); NaN when the mains
  frequency is not below ``hf``.
* ``emg_ratio``: power in 30 Hz–``hf`` over power in 1 Hz–``hf``: muscle
  (EMG) contamination; NaN when ``hf`` ≤ 30 Hz.
* ``drift_ratio``: power in (0, 0.3] Hz over power in (0, ``hf``]: slow drift
  and sweat (below the 0.5-1 Hz slow oscillations of deep sleep). Welch
  windows are 10 s (0.1 Hz bins), Hann, 50 % overlap, each window's mean
  removed (SciPy ``welch`` defaults otherwise).

Bad channels per recording (the rules of the PREP pipeline, Bigdely-Shamlo
et al. 2015, Front. Neuroinform. 9:16, simplified): a channel is

* ``flat`` when more than half of its epochs are flat;
* ``noisy`` when the robust z-score (median / 1.4826 MAD across channels) of
  its median log-SD exceeds 5 and its median SD is above 100 µV and 3 times the
  channels' median, or that of its
  median line-noise ratio exceeds 5 with the ratio above 0.3, or that of its
  median EMG ratio exceeds 5 with the ratio above 0.5 (needs 4 or more
  channels; the floors keep eye-blink frontal channels and temporal muscle,
  which are physiology, from being called bad);
* ``uncorrelated`` when the median over epochs of its largest absolute
  correlation with any other channel is below 0.4 while that figure's median
  over the channels is at least 0.6 (the channels do share signal, as
  referential scalp EEG does through volume conduction; needs 3 or more channels;
  computed on 1/k block means at about 50 Hz with each epoch's linear trend
  removed, which keeps the EEG band that neighbouring electrodes share).

Bad channels are excluded from regional averages and set to zero with their
mask bit cleared in the shards.

Epoch quality score in [0, 1]: the fraction of the recording's EEG channels
that are usable in that epoch, where a channel is usable when it is not a bad
channel and, in that epoch, not flat, not clipped, finite, with
``ptp_uv <= qc_ptp_uv`` (default 1000 µV), ``|kurtosis| <= qc_kurtosis`` (10),
``line_ratio <= qc_line_ratio`` (0.5), ``emg_ratio <= qc_emg_ratio`` (0.5) and
``drift_ratio <= qc_drift_ratio`` (0.9); 0 when any sample is non-finite. The
per-channel figures are in each shard sample's JSON, the epoch aggregates in the
catalog, so a selection can be re-thresholded without re-ingesting.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from ephys.qc.epochs import clipped_epochs, rails_uv, whole_epochs
from ephys.schemas import ChannelInfo, IngestConfig

#: Epochs processed together in the spectral figures (bounds Welch's frame and spectrum buffers).
_CHUNK_EPOCHS = 128
FEATURES = ("sd_uv", "ptp_uv", "kurtosis", "line_ratio", "emg_ratio", "drift_ratio")


@dataclass
class ChannelFeatures:
    """Figures of every channel and epoch of one recording: arrays of shape ``(n_channels, n_epochs)``."""

    sd_uv: np.ndarray
    ptp_uv: np.ndarray
    kurtosis: np.ndarray
    line_ratio: np.ndarray
    emg_ratio: np.ndarray
    drift_ratio: np.ndarray
    flat: np.ndarray
    clipped: np.ndarray
    nonfinite: np.ndarray
    max_corr: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @staticmethod
    def concat(parts: list[ChannelFeatures]) -> ChannelFeatures:
        """Join per-segment figures along the epoch axis."""
        names = ChannelFeatures.__dataclass_fields__
        return ChannelFeatures(**{k: np.concatenate([getattr(p, k) for p in parts], axis=1) for k in names})


class _WelchPlan(NamedTuple):
    window: np.ndarray  # (nper,) float32 Hann
    window_dft: np.ndarray  # (n_fix,) complex64: the window's DFT at the bins a frame's mean reaches
    n_bins: int  # bins 0..n_bins-1 cover every band
    bands: np.ndarray  # (2 * n_bins, 5) float32 indicator of each band, real and imaginary parts interleaved


#: Columns of :attr:`_WelchPlan.bands`.
_LINE, _TOTAL, _EMG, _DRIFT, _DRIFT_TOTAL = range(5)


@lru_cache(maxsize=32)
def _welch_plan(nper: int, sfreq: float, line_freq: float) -> _WelchPlan:
    hf = min(100.0, 0.45 * sfreq)
    f = np.fft.rfftfreq(nper, 1.0 / sfreq)
    window = signal.get_window("hann", nper).astype(np.float32)
    w_dft = np.fft.rfft(window.astype(np.float64))
    n_fix = int(np.flatnonzero(np.abs(w_dft) > 1e-6 * abs(w_dft[0]))[-1]) + 1  # 2 for the periodic Hann
    edges = [(line_freq - 1, line_freq + 1), (1.0, hf), (30.0, hf), (1e-9, 0.3), (1e-9, hf)]
    n_bins = int(np.searchsorted(f, hf, side="right"))
    bands = np.stack([(f[:n_bins] >= lo) & (f[:n_bins] <= hi) for lo, hi in edges], axis=1)
    return _WelchPlan(window, w_dft[:n_fix].astype(np.complex64), n_bins, np.repeat(bands, 2, axis=0).astype(np.float32))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan).astype(np.float32)


def _welch_ratios(xc: np.ndarray, sfreq: float, line_freq: float) -> np.ndarray:
    """``(3, n_epochs)`` line, EMG and drift ratios of finite epochs ``xc`` (n_epochs, n) whose
    means have been removed (see :func:`spectral_ratios`)."""
    hf = min(100.0, 0.45 * sfreq)
    nper = min(xc.shape[1], int(round(10 * sfreq)))
    out = np.full((3, xc.shape[0]), np.nan, np.float32)
    if nper < 8:
        return out
    step = nper - nper // 2
    n_win = (xc.shape[1] - nper) // step + 1
    plan = _welch_plan(nper, float(sfreq), float(line_freq))
    n_fix = min(len(plan.window_dft), plan.n_bins)
    for a in range(0, xc.shape[0], _CHUNK_EPOCHS):
        frames = sliding_window_view(xc[a : a + _CHUNK_EPOCHS], nper, axis=-1)[:, : n_win * step : step]
        spec = scipy.fft.rfft(frames * plan.window, axis=-1, overwrite_x=True)[..., : plan.n_bins]
        # Each window's mean removed after the transform: rfft(w (x - m)) = rfft(w x) - m rfft(w),
        # and rfft(w) of a periodic Hann window is zero beyond its first two bins.
        spec[..., :n_fix] -= frames.mean(axis=-1)[..., None] * plan.window_dft[:n_fix]
        parts = spec.view(np.float32)  # real and imaginary parts, interleaved
        power = np.square(parts, out=parts)
        b = (power.reshape(-1, power.shape[-1]) @ plan.bands).reshape(*power.shape[:2], -1).sum(axis=1)
        rows = slice(a, a + len(b))
        if line_freq + 1 < hf:
            out[0, rows] = _ratio(b[:, _LINE], b[:, _TOTAL])
        if hf > 30:
            out[1, rows] = _ratio(b[:, _EMG], b[:, _TOTAL])
        out[2, rows] = _ratio(b[:, _DRIFT], b[:, _DRIFT_TOTAL])
    return out


def _centred(ep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, x - mean, nonfinite)``: the float32 epochs with non-finite samples set to 0, the same
    with each epoch's mean removed, and which epochs held a non-finite sample (their float64 mean
    is not finite)."""
    x = np.asarray(ep, dtype=np.float32)
    mean = x.mean(axis=1, dtype=np.float64)
    nonfinite = ~np.isfinite(mean)
    if nonfinite.any():
        x = np.where(np.isfinite(x), x, np.float32(0.0))
        mean = x.mean(axis=1, dtype=np.float64)
    return x, x - mean.astype(np.float32)[:, None], nonfinite


def spectral_ratios(ep: np.ndarray, sfreq: float, line_freq: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line-noise, EMG and drift ratios of one channel's epochs.

    Welch's method as ``scipy.signal.welch`` does it by default (Hann window of ``nperseg`` = 10 s,
    50 % overlap, each window's mean removed, periodograms averaged), in float32 with the windows
    as a strided view. A band ratio needs no density scaling: every bin it sums (neither DC nor
    Nyquist) carries the same factor, so sums of ``|FFT|^2`` give the same ratio as Welch's PSD
    (tested against ``scipy.signal.welch`` to 1e-5). Non-finite samples count as 0.

    Parameters
    ----------
    ep : ndarray, shape (n_epochs, n_samples_per_epoch), µV
    sfreq : float, Hz
    line_freq : float, Hz

    Returns
    -------
    line_ratio, emg_ratio, drift_ratio : float32 ndarrays of shape (n_epochs,), NaN where undefined
    """
    line, emg, drift = _welch_ratios(_centred(ep)[1], sfreq, line_freq)
    return line, emg, drift


def _kurtosis_of_centred(xd: np.ndarray) -> np.ndarray:
    sq = xd * xd
    m2 = sq.sum(axis=1, dtype=np.float64) / xd.shape[1]
    m4 = np.vecdot(sq, sq).astype(np.float64) / xd.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m2 > 0, m4 / (m2 * m2) - 3.0, 0.0)


def excess_kurtosis(x: np.ndarray) -> np.ndarray:
    """Fisher (excess) kurtosis of each row, biased (population) moments, 0 for a constant row.

    Same as ``scipy.stats.kurtosis(x, axis=1, fisher=True, bias=True)`` to float32 rounding.
    """
    xm = x - x.mean(axis=1, keepdims=True, dtype=np.float64).astype(x.dtype)
    return _kurtosis_of_centred(xm)


def channel_features(ep: np.ndarray, sfreq: float, rails, *, line_freq: float, flat_uv: float,
                     clip_fraction: float) -> dict[str, np.ndarray]:
    """Every figure of the module docstring for one channel's epochs ``(n_epochs, n_samples)`` in µV.

    One pass finds the non-finite epochs (through their means); the centred epochs feed the SD,
    the Welch spectra and, once their linear trend is removed, peak-to-peak and kurtosis.
    Returns a dict of ``(n_epochs,)`` arrays keyed like :class:`ChannelFeatures` (without ``max_corr``).
    """
    x, xc, nonfinite = _centred(ep)
    n = x.shape[1]
    sd = np.sqrt(np.maximum(np.vecdot(xc, xc), 0.0) / n).astype(np.float32)
    line, emg, drift = _welch_ratios(xc, sfreq, line_freq)
    t = _trend_basis(n)
    xc -= np.outer((xc @ t) / (t @ t), t)  # each epoch's least-squares line (DC-coupled drift is not amplitude)
    return dict(sd_uv=sd, ptp_uv=np.ptp(xc, axis=1).astype(np.float32),
                kurtosis=np.nan_to_num(_kurtosis_of_centred(xc), nan=0.0).astype(np.float32), line_ratio=line,
                emg_ratio=emg, drift_ratio=drift, flat=sd < flat_uv, clipped=clipped_epochs(x, rails, clip_fraction),
                nonfinite=nonfinite)


@lru_cache(maxsize=16)
def _trend_basis(n: int) -> np.ndarray:
    t = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    t.setflags(write=False)
    return t


def max_neighbour_correlation(eps: list[np.ndarray], sfreq: float) -> np.ndarray:
    """Per channel and epoch, the largest |Pearson r| with any other channel.

    Parameters
    ----------
    eps : list of ndarray, each (n_epochs, n_samples_per_epoch), µV, one per channel, same sfreq
    sfreq : float, Hz

    Returns
    -------
    ndarray, shape (n_channels, n_epochs), float32; NaN with fewer than 2 channels
    """
    n_ch, n_ep = len(eps), eps[0].shape[0] if eps else 0
    if n_ch < 2:
        return np.full((n_ch, n_ep), np.nan, np.float32)
    k = max(1, int(sfreq // 50))
    m = eps[0].shape[1] // k
    ones = np.full(k, 1.0 / k, np.float32)

    def block_means(e: np.ndarray) -> np.ndarray:  # (n_ep, m): means of k consecutive samples
        e = np.ascontiguousarray(e[:, : m * k], dtype=np.float32)
        x = (e.reshape(n_ep * m, k) @ ones).reshape(n_ep, m)
        if not np.isfinite(x).all():  # non-finite samples count as 0
            x = (np.nan_to_num(e, nan=0.0, posinf=0.0, neginf=0.0).reshape(n_ep * m, k) @ ones).reshape(n_ep, m)
        return x

    x = np.stack([block_means(e) for e in eps], axis=1)  # (n_ep, n_ch, m)
    t = _trend_basis(m)
    x -= x.mean(axis=2, keepdims=True)
    x -= np.multiply.outer(x @ t / (t @ t), t)  # remove each epoch's linear trend
    norm = np.sqrt(np.vecdot(x, x))[..., None]
    z = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    r = np.abs(z @ z.transpose(0, 2, 1))  # (n_ep, n_ch, n_ch)
    idx = np.arange(n_ch)
    r[:, idx, idx] = 0.0
    return r.max(axis=2).T.astype(np.float32)


def _robust_z(v: np.ndarray) -> np.ndarray:
    med = np.nanmedian(v)
    mad = 1.4826 * np.nanmedian(np.abs(v - med))
    if not np.isfinite(mad) or mad <= 1e-12:
        return np.zeros_like(v)
    return (v - med) / mad


def bad_channels(f: ChannelFeatures) -> dict[int, str]:
    """``{channel position: reason}`` for the rules of the module docstring (``flat``, ``noisy: ...``,
    ``uncorrelated``)."""
    n_ch = f.sd_uv.shape[0]
    out: dict[int, str] = {}
    if n_ch == 0 or f.sd_uv.shape[1] == 0:
        return out
    for c in np.flatnonzero(f.flat.mean(axis=1) > 0.5):
        out[int(c)] = "flat"
    live = [c for c in range(n_ch) if c not in out]
    if len(live) >= 4:
        with np.errstate(invalid="ignore", divide="ignore"):
            log_sd = np.log(np.median(f.sd_uv[live], axis=1) + 1e-6)
        checks = []  # the most specific cause first: mains, muscle, then amplitude
        for name, arr, floor in (("line noise", f.line_ratio, 0.3), ("muscle", f.emg_ratio, 0.5)):
            if np.isfinite(arr[live]).any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: ratio undefined at low rates
                    checks.append((name, np.nanmedian(arr[live], axis=1), floor))
        # Amplitude: 3x the channels' median SD and above 100 µV (blink-laden frontal channels reach ~2.5x).
        checks.append(("amplitude", log_sd, max(np.log(100.0), float(np.median(log_sd)) + np.log(3.0))))
        for name, v, floor in checks:
            z = _robust_z(v)
            for j in np.flatnonzero((z > 5) & (v > floor)):
                out.setdefault(live[j], f"noisy: {name}")
    live = [c for c in range(n_ch) if c not in out]
    if len(live) >= 3 and f.max_corr.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(f.max_corr[live], axis=1)
        if not np.nanmedian(med) >= 0.6:
            return out  # nothing to compare against: bipolar or unreferenced channels, or synthetic noise
        for j in np.flatnonzero(med < 0.4):
            out.setdefault(live[j], "uncorrelated")
    return out


@dataclass(frozen=True)
class Thresholds:
    """Per channel-epoch limits of the quality score (see the module docstring)."""

    ptp_uv: float = 1000.0
    kurtosis: float = 10.0
    line_ratio: float = 0.5
    emg_ratio: float = 0.5
    drift_ratio: float = 0.9


def usable(f: ChannelFeatures, bad: dict[int, str], th: Thresholds) -> np.ndarray:
    """``(n_channels, n_epochs)`` bool: the channel is usable in that epoch (NaN ratios pass)."""
    ok = ~(f.flat | f.clipped | f.nonfinite)
    ok &= f.ptp_uv <= th.ptp_uv
    ok &= np.abs(f.kurtosis) <= th.kurtosis
    for arr, lim in ((f.line_ratio, th.line_ratio), (f.emg_ratio, th.emg_ratio), (f.drift_ratio, th.drift_ratio)):
        ok &= ~(arr > lim)
    for c in bad:
        ok[c] = False
    return ok


def epoch_scores(f: ChannelFeatures, bad: dict[int, str], th: Thresholds) -> np.ndarray:
    """Quality score per epoch, ``(n_epochs,)`` float32 in [0, 1] (module docstring)."""
    ok = usable(f, bad, th)
    score = ok.mean(axis=0) if ok.shape[0] else np.zeros(ok.shape[1])
    return np.where(f.nonfinite.any(axis=0), 0.0, score).astype(np.float32)


def raw_epochs(x: np.ndarray, sfreq: float, epoch_s: float, n_epochs: int) -> np.ndarray:
    """``(n_epochs, per)`` view or copy of a channel cut into epochs at its own rate.

    With an integer number of samples per epoch this is a reshape; with a
    fractional one (256.02 Hz) epoch k starts at sample ``floor(k * epoch_s * sfreq)``
    and spans ``floor(epoch_s * sfreq)`` samples, clipped to the signal.
    """
    exact = epoch_s * sfreq
    per = int(round(exact))
    if abs(exact - per) < 1e-9 and n_epochs * per <= x.size:
        return x[: n_epochs * per].reshape(n_epochs, per)
    per = max(1, int(np.floor(exact)))
    starts = np.minimum(np.floor(np.arange(n_epochs) * exact).astype(np.int64), max(x.size - per, 0))
    return x[np.minimum(starts[:, None] + np.arange(per), x.size - 1)]


def segment_features(picked: list[ChannelInfo], signals: list[np.ndarray], seg_dur_s: float,
                     config: IngestConfig) -> ChannelFeatures | None:
    """QC figures of the whole epochs of ``seg_dur_s`` seconds of raw signal (``signals``: one 1-D µV array per
    channel of ``picked``, each at its own rate); ``None`` without a whole epoch. Options from ``config``
    (``epoch_s``, ``line_freq``, ``flat_uv``, ``clip_fraction``); the neighbour correlation is computed among the
    channels of the most common rate (NaN for the others)."""
    n_epochs = whole_epochs(seg_dur_s, config.epoch_s)
    if n_epochs == 0:
        return None
    eps = [raw_epochs(x, ch.sfreq, config.epoch_s, n_epochs) for ch, x in zip(picked, signals)]
    cols: dict[str, list] = {}
    for ch, ep in zip(picked, eps):
        for k, v in channel_features(ep, ch.sfreq, rails_uv(ch), line_freq=config.line_freq, flat_uv=config.flat_uv,
                                     clip_fraction=config.clip_fraction).items():
            cols.setdefault(k, []).append(v)
    f = ChannelFeatures(**{k: np.stack(v) for k, v in cols.items()})
    # Neighbour correlation among the channels of the most common sampling rate.
    rates = [ch.sfreq for ch in picked]
    common = max(set(rates), key=rates.count)
    rows = [i for i, r in enumerate(rates) if r == common]
    f.max_corr = np.full((len(picked), n_epochs), np.nan, np.float32)
    f.max_corr[rows] = max_neighbour_correlation([eps[i] for i in rows], common)
    return f
