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

from typing import TYPE_CHECKING

import numpy as np

from ephys.schemas import ChannelInfo

if TYPE_CHECKING:  # pragma: no cover
    from ephys.qc.features import ChannelFeatures


def whole_epochs(duration_s: float, epoch_s: float) -> int:
    """Whole epochs of ``epoch_s`` seconds in ``duration_s`` seconds (a rounding tolerance of 1e-9 epochs)."""
    return int(np.floor(duration_s / epoch_s + 1e-9))


def valid_epochs(f: ChannelFeatures) -> np.ndarray:
    """``(n_epochs,)`` bool: the epoch has no non-finite sample and at most half of its channels are flat or
    clipped (the rule of the module docstring)."""
    return ~f.nonfinite.any(axis=0) & ((f.flat | f.clipped).sum(axis=0) <= f.sd_uv.shape[0] / 2)


def rails_uv(ch: ChannelInfo) -> tuple[float, float, float] | None:
    """``(low, high, tolerance)`` in µV of a channel's ADC rails, or ``None`` when unknown."""
    if None in (ch.physical_min, ch.physical_max, ch.digital_min, ch.digital_max) or ch.to_uv is None:
        return None
    lo, hi = sorted((ch.physical_min * ch.to_uv, ch.physical_max * ch.to_uv))
    step = abs(hi - lo) / max(ch.digital_max - ch.digital_min, 1)
    return lo, hi, step / 2


def clipped_epochs(x: np.ndarray, rails: tuple[float, float, float] | None, clip_fraction: float) -> np.ndarray:
    """``(n_epochs,)`` bool: more than ``clip_fraction`` of the epoch's samples are within ``tol`` of a rail.

    ``x`` is ``(n_epochs, n_samples_per_epoch)``, finite, µV; ``rails`` is ``(low, high, tol)`` in µV
    (:func:`rails_uv`) or ``None`` (never clipped). Only epochs whose minimum or maximum reaches a
    rail are counted sample by sample.
    """
    clipped = np.zeros(x.shape[0], bool)
    if rails is None or not x.size:
        return clipped
    lo, hi, tol = rails
    near = np.flatnonzero((x.min(axis=1) <= lo + tol) | (x.max(axis=1) >= hi - tol))
    if len(near):
        xs = x[near]
        clipped[near] = ((xs <= lo + tol) | (xs >= hi - tol)).mean(axis=1) > clip_fraction
    return clipped
