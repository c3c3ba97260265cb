"""Per-epoch records: the ``json`` member of every shard sample."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EpochQC(BaseModel):
    """Quality figures of one 30-s epoch, computed on the raw (unfiltered) signal.

    ``n_flat``: channels whose SD is below ``flat_uv``; ``n_clipped``: channels
    with more than ``clip_fraction`` of samples at the physical rails;
    ``nonfinite``: any NaN/inf sample; ``max_abs_uv``: largest |amplitude| of
    the conditioned output (µV); ``valid``: no non-finite samples and at most
    half of the channels flat or clipped.
    """

    model_config = ConfigDict(frozen=True)

    n_flat: int = Field(ge=0)
    n_clipped: int = Field(ge=0)
    nonfinite: bool
    max_abs_uv: float = Field(ge=0)
    valid: bool


class EpochAnnotation(BaseModel):
    """An annotation overlapping an epoch; onset relative to the epoch start (s)."""

    model_config = ConfigDict(frozen=True)

    onset_s: float
    duration_s: float
    text: str


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
    annotations: list[EpochAnnotation] = []
