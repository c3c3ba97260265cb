"""Ingest settings. Every processing choice is recorded (in the catalog's ``runs``
table and, through :meth:`IngestConfig.processing_hash`, on every recording) so a
corpus says exactly how it was made."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Montage = Literal["regional8", "native"]

#: Fields that change the bytes of shards. Changing any of them needs a new output folder.
PROCESSING_FIELDS = (
    "montage",
    "sfreq",
    "epoch_s",
    "l_freq",
    "h_freq",
    "line_freq",
    "min_epochs",
    "min_regions",
    "flat_uv",
    "clip_fraction",
    "shard_size",
    "qc_ptp_uv",
    "qc_kurtosis",
    "qc_line_ratio",
    "qc_emg_ratio",
    "qc_drift_ratio",
    "stager",
)


def lowpass_edge(h_freq: float, sfreq: float) -> float:
    """The band-pass low-pass edge ingest uses for a recording sampled at ``sfreq`` Hz: ``min(h_freq, 0.4 *
    sfreq)`` (Hz), so that the transition band stays below Nyquist (:mod:`ephys.ingest.condition`)."""
    return min(h_freq, 0.4 * sfreq)


class IngestConfig(BaseModel):
    """Settings of ``ephys ingest`` (defaults follow EPI-250k)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    montage: Montage = "regional8"
    sfreq: float = Field(250.0, gt=0, description="output sampling frequency, Hz")
    epoch_s: float = Field(30.0, gt=0, description="epoch length, s")
    l_freq: float = Field(0.5, ge=0, description="band-pass high-pass edge, Hz")
    h_freq: float = Field(
        100.0, gt=0, description="band-pass low-pass edge, Hz; capped at 0.4 x sfreq of low-rate input"
    )
    line_freq: Literal[50, 60] = Field(50, description="mains frequency for the notch, Hz")
    min_epochs: int = Field(10, ge=0, description="a recording needs at least this many valid epochs")
    min_regions: int = Field(
        6, ge=1, le=8, description="regional8: regions that must hold at least one 10-20 electrode"
    )
    flat_uv: float = Field(0.5, ge=0, description="a channel whose epoch SD is below this (µV) is flat")
    clip_fraction: float = Field(
        0.01, gt=0, le=1, description="a channel with more than this fraction of samples at its rails is clipped"
    )
    shard_size: int = Field(1000, ge=1, description="samples (epochs) per shard")
    qc_ptp_uv: float = Field(1000.0, gt=0, description="quality score: a channel-epoch above this peak-to-peak (µV) is not usable")
    qc_kurtosis: float = Field(10.0, gt=0, description="quality score: limit of |excess kurtosis|")
    qc_line_ratio: float = Field(0.5, gt=0, description="quality score: limit of mains power / 1-100 Hz power")
    qc_emg_ratio: float = Field(0.5, gt=0, description="quality score: limit of 30-100 Hz power / 1-100 Hz power")
    qc_drift_ratio: float = Field(0.9, gt=0, description="quality score: limit of <0.3 Hz power / total power")
    stager: Literal["gssc", "yasa", "ensemble", "none"] = Field(
        "none", description="sleep staging per epoch: gssc (EPI-250k; AGPL-3.0 extra), yasa (BSD-3 extra), ensemble "
        "(both, probabilities averaged; recommended where both are installed) or none"
    )
    keep_paths: bool = Field(False, description="store archive-relative paths (they may hold identifiers)")
    date_shift: bool = Field(
        False, description="store recording starts shifted per subject by a keyed offset (else no dates at all)"
    )
    block_epochs: int = Field(
        40, ge=1, description="epochs read, checked and conditioned at a time (40 = 20 min): bounds worker memory "
        "and is the unit of work Dask spreads over workers; changes shard bytes only by float rounding"
    )
    taxonomy: str | None = Field(
        None, description="annotation taxonomy YAML file (default: the packaged one; see `ephys annotations "
        "cluster`); labels are catalog content, not processing: `ephys catalog relabel` applies a new one"
    )
    task_timeout_s: float | None = Field(
        None, gt=0, description="a recording whose processing takes longer is recorded as failed ('timeout')"
    )

    @property
    def n_samples(self) -> int:
        """Samples per epoch (7,500 at 250 Hz x 30 s)."""
        return int(round(self.sfreq * self.epoch_s))

    def processing_dict(self) -> dict:
        out = {k: getattr(self, k) for k in PROCESSING_FIELDS}
        if self.block_epochs != 40:  # named only when not the default, so earlier outputs keep their hash
            out["block_epochs"] = self.block_epochs
        return out

    def processing_hash(self) -> str:
        """SHA-256 (hex, first 16) of the settings that change shard bytes."""
        blob = json.dumps(self.processing_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
