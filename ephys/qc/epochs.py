"""Per-epoch quality figures on the raw signal, and the recording-level rule.

Figures per 30-s epoch and channel, on the unfiltered signal in µV:

* flat: standard deviation below ``flat_uv`` (default 0.5 µV);
* clipped: more than ``clip_fraction`` (default 1 %) of samples within half a
  digital step of the channel's physical minimum or maximum (the ADC rails);
* non-finite: any NaN or inf sample.

An epoch is valid when it has no non-finite sample and at most half of its
channels are flat or clipped. A recording needs ``min_epochs`` valid epochs
(EPI-250k used 10).
"""

from __future__ import annotations

import numpy as np

from ephys.schemas import ChannelInfo


def rails_uv(ch: ChannelInfo) -> tuple[float, float, float] | None:
    """``(low, high, tolerance)`` in µV of a channel's ADC rails, or ``None`` when unknown."""
    if None in (ch.physical_min, ch.physical_max, ch.digital_min, ch.digital_max) or ch.to_uv is None:
        return None
    lo, hi = sorted((ch.physical_min * ch.to_uv, ch.physical_max * ch.to_uv))
    step = abs(hi - lo) / max(ch.digital_max - ch.digital_min, 1)
    return lo, hi, step / 2


def channel_epoch_flags(
    x: np.ndarray, rails: tuple[float, float, float] | None, *, flat_uv: float, clip_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat, clipped and non-finite flags of one channel's epochs.

    Parameters
    ----------
    x : ndarray, shape (n_epochs, n_samples_per_epoch)
        One channel's raw epochs in µV at its own sampling rate.

    Returns
    -------
    flat, clipped, nonfinite : bool ndarrays of shape (n_epochs,)
    """
    finite = np.isfinite(x)
    nonfinite = ~finite.all(axis=1)
    xs = np.where(finite, x, 0.0)
    flat = xs.std(axis=1) < flat_uv
    if rails is None:
        clipped = np.zeros(x.shape[0], bool)
    else:
        lo, hi, tol = rails
        at_rail = (xs <= lo + tol) | (xs >= hi - tol)
        clipped = at_rail.mean(axis=1) > clip_fraction
    return flat, clipped, nonfinite
