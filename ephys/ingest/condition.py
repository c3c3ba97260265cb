"""Signal conditioning: band-pass, notch, resample (MNE and SciPy filters).

* Band-pass ``l_freq``-``h_freq`` (default 0.5-100 Hz): MNE's zero-phase
  windowed-sinc FIR (``mne.filter.filter_data``, firwin design, automatic
  transition bands). For low-rate recordings the low-pass edge is capped at
  ``0.4 x sfreq`` so that the transition band stays below Nyquist.
* Notch at the mains frequency and its harmonics below the low-pass edge
  (``mne.filter.notch_filter``, FIR).
* Resample to 250 Hz by polyphase filtering (``scipy.signal.resample_poly``
  with the exact rational ratio, e.g. 256 -> 250 Hz is up 125 / down 128).
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly


def lowpass_edge(h_freq: float, sfreq: float) -> float:
    """The low-pass edge actually used: ``min(h_freq, 0.4 * sfreq)`` (Hz)."""
    return min(h_freq, 0.4 * sfreq)


def notch_freqs(line_freq: float, h_edge: float) -> list[float]:
    """Mains frequency and harmonics strictly below the low-pass edge (Hz)."""
    return [line_freq * k for k in range(1, int(h_edge // line_freq) + 1) if line_freq * k < h_edge]


def resample_ratio(sfreq_in: float, sfreq_out: float) -> tuple[int, int]:
    """``(up, down)`` with ``sfreq_in * up / down == sfreq_out`` (to 1e-9 relative)."""
    r = Fraction(sfreq_out).limit_denominator(10**6) / Fraction(sfreq_in).limit_denominator(10**6)
    r = r.limit_denominator(10_000)
    return r.numerator, r.denominator


def condition(x: np.ndarray, sfreq: float, *, l_freq: float, h_freq: float, line_freq: float, sfreq_out: float) -> np.ndarray:
    """Band-pass, notch and resample signals.

    Parameters
    ----------
    x : ndarray, shape (n_channels, n_samples)
        Signals in µV at ``sfreq`` Hz, finite.
    sfreq, sfreq_out : float
        Input and output sampling frequencies, Hz.

    Returns
    -------
    ndarray, shape (n_channels, ceil(n_samples * sfreq_out / sfreq)), float32, µV
    """
    import mne

    h_edge = lowpass_edge(h_freq, sfreq)
    y = np.asarray(x, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "filter longer than signal" on very short inputs
        y = mne.filter.filter_data(y, sfreq, l_freq or None, h_edge, method="fir", phase="zero",
                                   fir_design="firwin", pad="reflect_limited", n_jobs=None, verbose="error")  # fmt: skip
        freqs = notch_freqs(line_freq, h_edge)
        if freqs:
            y = mne.filter.notch_filter(y, sfreq, freqs, method="fir", phase="zero", fir_design="firwin",
                                        pad="reflect_limited", n_jobs=None, verbose="error")  # fmt: skip
    up, down = resample_ratio(sfreq, sfreq_out)
    if (up, down) != (1, 1):
        y = resample_poly(y, up, down, axis=-1)
    return y.astype(np.float32)
