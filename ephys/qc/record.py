"""What QC hands on for one recording: bad channels, usable channel-epochs, scores and validity
(:func:`assess`), the per-epoch aggregates of the catalog and the shards (:meth:`RecordingQC.epoch_records`),
and the per-channel figures the worker spools and the packer copies into each sample (:class:`QCFigures`).

The rules are those of :mod:`ephys.qc.features` (figures, bad channels, score) and :mod:`ephys.qc.epochs`
(validity); the pipeline only calls them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ephys.qc.epochs import valid_epochs
from ephys.qc.features import FEATURES, ChannelFeatures, Thresholds, bad_channels, epoch_scores, usable
from ephys.schemas import EpochQC, IngestConfig


def _nan_to_none(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)


class QCFigures:
    """The per-channel QC figures of every epoch as one float32 array ``(n_epochs, len(NAMES), n_channels)``:
    rows :data:`NAMES` (the six :data:`~ephys.qc.features.FEATURES`, then ``usable`` as 0/1).

    The worker writes it next to the epochs (``<sha256>.qc.npy`` in the spool folder, :meth:`stack`); the packer
    turns one epoch of it into the sample's ``channel_qc`` and ``channel_usable`` (:meth:`epoch_fields`).
    """

    NAMES: tuple[str, ...] = (*FEATURES, "usable")

    @staticmethod
    def stack(f: ChannelFeatures, ok: np.ndarray) -> np.ndarray:
        """The array of ``f`` (``(n_channels, n_epochs)`` figures) and ``ok`` (usable, same shape), C-ordered."""
        figures = np.stack([getattr(f, k) for k in FEATURES] + [ok.astype(np.float32)], axis=1).transpose(2, 1, 0)
        return np.ascontiguousarray(figures, dtype=np.float32)

    @classmethod
    def epoch_fields(cls, figures: np.ndarray | None, index: int) -> dict:
        """``{"channel_qc": {name: [value or None per channel]}, "channel_usable": [bool per channel]}`` of epoch
        ``index`` (values rounded to 4 decimals, non-finite as None); ``{}`` without figures."""
        if figures is None:
            return {}
        f = figures[index].tolist()  # Python floats: rounding them one by one is 10x faster than NumPy scalars
        qc = {name: [round(v, 4) if math.isfinite(v) else None for v in f[i]] for i, name in enumerate(FEATURES)}
        return {"channel_qc": qc, "channel_usable": [bool(v) for v in f[cls.NAMES.index("usable")]]}


def thresholds(config: IngestConfig) -> Thresholds:
    """The quality-score limits of an ingest configuration (``qc_*`` options)."""
    return Thresholds(ptp_uv=config.qc_ptp_uv, kurtosis=config.qc_kurtosis, line_ratio=config.qc_line_ratio,
                      emg_ratio=config.qc_emg_ratio, drift_ratio=config.qc_drift_ratio)


@dataclass
class RecordingQC:
    """QC of one recording's picked channels: ``features`` (figures ``(n_channels, n_epochs)``), ``bad`` (channel
    position -> reason), ``usable`` (``(n_channels, n_epochs)`` bool), ``scores`` (``(n_epochs,)`` float32 in [0,
    1]) and ``valid`` (``(n_epochs,)`` bool, :func:`~ephys.qc.epochs.valid_epochs`)."""

    features: ChannelFeatures
    bad: dict[int, str]
    usable: np.ndarray
    scores: np.ndarray
    valid: np.ndarray

    @property
    def good(self) -> list[int]:
        """Positions of the channels that are not bad."""
        return [i for i in range(self.features.sd_uv.shape[0]) if i not in self.bad]

    def epoch_records(self, max_abs_uv: np.ndarray) -> list[EpochQC]:
        """Epoch aggregates of the per-channel figures (ratios: median over good channels; ``max_abs_uv``: the
        conditioned epoch's largest |µV|, ``(n_epochs,)``)."""
        f, good, ok = self.features, self.good, self.usable
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN medians (ratios undefined at low rates)
            med = {k: np.nanmedian(getattr(f, k)[good], axis=0) if good else np.full(f.sd_uv.shape[1], np.nan)
                   for k in ("line_ratio", "emg_ratio", "drift_ratio")}
        for k in range(f.sd_uv.shape[1]):
            nonfinite = bool(f.nonfinite[:, k].any())
            out.append(EpochQC(
                n_flat=int(f.flat[:, k].sum()), n_clipped=int(f.clipped[:, k].sum()), nonfinite=nonfinite,
                max_abs_uv=float(round(max_abs_uv[k], 3)), valid=bool(self.valid[k]),
                score=round(float(self.scores[k]), 4), n_artifact=int((~ok[good, k]).sum()) if good else 0,
                max_ptp_uv=_nan_to_none(f.ptp_uv[good, k].max()) if good else None,
                line_ratio=_nan_to_none(med["line_ratio"][k]), emg_ratio=_nan_to_none(med["emg_ratio"][k]),
                drift_ratio=_nan_to_none(med["drift_ratio"][k]),
                max_kurtosis=_nan_to_none(np.abs(f.kurtosis[good, k]).max()) if good else None,
            ))
        return out

    def figures(self) -> np.ndarray:
        """The :class:`QCFigures` array of this recording."""
        return QCFigures.stack(self.features, self.usable)


def assess(features: ChannelFeatures, config: IngestConfig) -> RecordingQC:
    """Bad channels, usable channel-epochs, quality scores and valid epochs of a recording's figures."""
    bad = bad_channels(features)
    th = thresholds(config)
    return RecordingQC(features, bad, usable(features, bad, th), epoch_scores(features, bad, th),
                       valid_epochs(features))
