"""Per-epoch records: the ``json`` member of every shard sample."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EpochQC(BaseModel):
    """Quality figures of one 30-s epoch, computed on the raw (unfiltered) signal.

    ``n_flat``: channels whose SD is below ``flat_uv``; ``n_clipped``: channels
    with more than ``clip_fraction`` of samples at the physical rails;
    ``nonfinite``: any NaN/inf sample; ``max_abs_uv``: largest |amplitude| of
    the conditioned output (µV); ``valid``: no non-finite samples and at most
    half of the channels flat or clipped. The rest are the figures and the
    quality score of :mod:`ephys.qc.features` (ratios are medians over the
    recording's good channels; ``None`` where undefined).
    """

    model_config = ConfigDict(frozen=True)

    n_flat: int = Field(ge=0)
    n_clipped: int = Field(ge=0)
    nonfinite: bool
    max_abs_uv: float = Field(ge=0)
    valid: bool
    score: float = Field(1.0, ge=0, le=1, description="fraction of channels usable in this epoch")
    n_artifact: int = Field(0, ge=0, description="good channels failing a QC limit in this epoch")
    max_ptp_uv: float | None = None
    line_ratio: float | None = None
    emg_ratio: float | None = None
    drift_ratio: float | None = None
    max_kurtosis: float | None = None


class EpochStage(BaseModel):
    """Sleep stage of one epoch and the stager's five probabilities (W, N1, N2, N3, REM)."""

    model_config = ConfigDict(frozen=True)

    stage: str | None = Field(None, description="W, N1, N2, N3 or REM; None when not staged")
    probs: list[float] | None = None


class EpochAnnotation(BaseModel):
    """An annotation overlapping an epoch; onset relative to the epoch start (s)."""

    model_config = ConfigDict(frozen=True)

    onset_s: float
    duration_s: float
    text: str
    category: str | None = None
    subcategory: str | None = None
    negated: bool | None = None
    uncertain: bool | None = None


class EpochMeta(BaseModel):
    """Metadata stored next to ``eeg.npy`` (float16 µV, shape ``(n_channels, n_samples)``)."""

    key: str
    recording: str = Field(description="SHA-256 of the source recording")
    subject: str = Field(description="pseudonymous subject id")
    epoch_index: int = Field(ge=0)
    start_s: float = Field(ge=0, description="epoch onset from recording start, s")
    sfreq: float
    n_samples: int
    montage: str
    channel_names: list[str]
    mask: list[bool] = Field(description="per channel/region: True where signal is present")
    units: str = "uV"
    dtype: str = "float16"
    qc: EpochQC
    channel_qc: dict[str, list[float | None]] = Field(
        default_factory=dict, description="per input channel (qc_channels): sd_uv, ptp_uv, kurtosis, line/emg/drift ratios"
    )
    qc_channels: list[str] = Field(default_factory=list, description="input EEG channels the figures refer to")
    channel_usable: list[bool] = Field(default_factory=list)
    bad_channels: dict[str, str] = Field(default_factory=dict, description="recording-level bad channels: name -> reason")
    sleep: EpochStage | None = None
    annotations: list[EpochAnnotation] = []
