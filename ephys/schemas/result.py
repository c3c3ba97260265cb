"""What a worker hands back to the driver for one recording.

The signal itself does not travel through the scheduler: the worker stages it
as a ``.npy`` file (float16, ``(n_epochs, n_channels, n_samples)``) under
``OUT/.spool`` and returns its path; the driver packs it into shards.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ephys.schemas.epoch import EpochQC, EpochStage
from ephys.schemas.failure import Failure, RecordingStatus
from ephys.schemas.recording import Annotation


class EpochRecord(BaseModel):
    index: int = Field(ge=0)
    start_s: float = Field(ge=0)
    qc: EpochQC
    sleep: EpochStage | None = None


class RecordingResult(BaseModel):
    sha256: str
    format: str
    status: RecordingStatus
    failure: Failure | None = None
    file_bytes: int = 0
    subject: str | None = None
    age_years: int | None = Field(default=None, description="completed years at the recording start, capped at 90")
    sex: str | None = Field(default=None, description="'F', 'M' or None")
    start_time: datetime | None = Field(default=None, description="recording start shifted per subject (--date-shift)")
    duration_s: float | None = None
    n_channels: int | None = None
    n_eeg_channels: int | None = None
    sfreq: float | None = Field(default=None, description="highest EEG sampling rate, Hz")
    channels: list[dict] = Field(default_factory=list, description="name, kind, sfreq, unit of every channel")
    montage: str | None = None
    channel_names: list[str] = Field(default_factory=list, description="output channels (regions or electrodes)")
    mask: list[bool] = Field(default_factory=list)
    qc_channels: list[str] = Field(default_factory=list, description="input EEG channels the QC figures refer to")
    bad_channels: dict[str, str] = Field(default_factory=dict, description="name -> reason (flat, noisy: ..., uncorrelated)")
    stager: str | None = Field(default=None, description="sleep-staging backend and version, e.g. 'gssc 0.0.9'")
    staging_channels: list[str] = Field(default_factory=list)
    epochs: list[EpochRecord] = Field(default_factory=list)
    annotations: list[Annotation] = Field(default_factory=list)
    n_scrubbed: int = Field(0, description="names/dates removed from annotation text")
    spool_path: str | None = None
    qc_path: str | None = Field(default=None, description="spooled per-channel QC figures (ephys.qc.record.QCFigures)")
    seconds: dict[str, float] = Field(default_factory=dict, description="time per stage, s")

    @property
    def n_epochs(self) -> int:
        return len(self.epochs)

    @property
    def n_valid_epochs(self) -> int:
        return sum(e.qc.valid for e in self.epochs)
