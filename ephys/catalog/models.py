"""SQLAlchemy 2.0 ORM models of the catalog.

One row per ingest run, recording (keyed by SHA-256 of its content), 30-s
epoch, annotation and shard, and a summary of each recording's epochs in each
shard. Schema changes go through Alembic migrations in
``ephys/catalog/migrations``; never edit a released migration.

Patient identity never enters these tables: ``subject`` is a keyed pseudonym,
paths are stored as a SHA-256 unless ``--keep-paths`` was given, annotation
text is scrubbed before it arrives here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value facts about the catalog (processing hash, secret fingerprint)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    code_version: Mapped[str] = mapped_column(String(32))
    processing_hash: Mapped[str] = mapped_column(String(16))
    config_json: Mapped[str] = mapped_column(Text)
    n_discovered: Mapped[int] = mapped_column(Integer, default=0)
    n_skipped: Mapped[int] = mapped_column(Integer, default=0)
    n_ok: Mapped[int] = mapped_column(Integer, default=0)
    n_rejected: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    eeg_hours: Mapped[float] = mapped_column(Float, default=0.0)
    wall_s: Mapped[float] = mapped_column(Float, default=0.0)


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    format: Mapped[str] = mapped_column(String(32), index=True)
    n_files: Mapped[int] = mapped_column(Integer, default=1)
    path_hash: Mapped[str] = mapped_column(String(64))
    relpath: Mapped[str | None] = mapped_column(Text, nullable=True)
    file_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    subject: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    age_years: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="at recording start, capped at 90")
    sex: Mapped[str | None] = mapped_column(String(1), nullable=True)
    start_time: Mapped[datetime | None] = mapped_column(
        DateTime, nullable=True, doc="recording start shifted per subject (only with --date-shift)"
    )
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_channels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    n_eeg_channels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sfreq: Mapped[float | None] = mapped_column(Float, nullable=True)
    channels_json: Mapped[str] = mapped_column(Text, default="[]")
    montage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    output_channels_json: Mapped[str] = mapped_column(Text, default="[]")
    status: Mapped[str] = mapped_column(String(16), index=True)
    failure_stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    failure_code: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    n_epochs: Mapped[int] = mapped_column(Integer, default=0)
    n_valid_epochs: Mapped[int] = mapped_column(Integer, default=0)
    n_packed: Mapped[int] = mapped_column(Integer, default=0)
    n_annotations: Mapped[int] = mapped_column(Integer, default=0)
    n_scrubbed: Mapped[int] = mapped_column(Integer, default=0)
    processing_hash: Mapped[str] = mapped_column(String(16))
    n_bad_channels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bad_channels_json: Mapped[str | None] = mapped_column(Text, nullable=True, doc='{"T7": "flat", ...}')
    stager: Mapped[str | None] = mapped_column(String(64), nullable=True, doc="sleep-staging backend and version")
    staging_channels: Mapped[str | None] = mapped_column(String(128), nullable=True)
    seconds_json: Mapped[str] = mapped_column(Text, default="{}")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime)

    @property
    def done(self) -> bool:
        """Terminal: failed/rejected, or ok with every epoch in a committed shard."""
        return self.status != "ok" or self.n_packed >= self.n_epochs


class RecordingPath(Base):
    """Every place a recording's content was found (duplicates share one recording row)."""

    __tablename__ = "recording_paths"
    __table_args__ = (UniqueConstraint("recording_id", "path_hash", name="uq_recording_path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    path_hash: Mapped[str] = mapped_column(String(64), doc="HMAC-SHA-256 (site secret) of the archive-relative path")
    relpath: Mapped[str | None] = mapped_column(Text, nullable=True, doc="only with --keep-paths")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)


class Shard(Base):
    __tablename__ = "shards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    index: Mapped[int] = mapped_column(Integer, unique=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    n_samples: Mapped[int] = mapped_column(Integer)
    n_bytes: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Epoch(Base):
    __tablename__ = "epochs"
    __table_args__ = (UniqueConstraint("recording_id", "index", name="uq_epoch_recording_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    shard_id: Mapped[int] = mapped_column(ForeignKey("shards.id"), index=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    valid: Mapped[bool] = mapped_column(Boolean, index=True)
    n_flat: Mapped[int] = mapped_column(Integer)
    n_clipped: Mapped[int] = mapped_column(Integer)
    nonfinite: Mapped[bool] = mapped_column(Boolean)
    max_abs_uv: Mapped[float] = mapped_column(Float)
    mask: Mapped[str] = mapped_column(String(128), doc="one '1'/'0' per output channel")
    score: Mapped[float | None] = mapped_column(Float, nullable=True, index=True, doc="quality score in [0, 1]")
    n_artifact: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="good channels failing a QC limit")
    max_ptp_uv: Mapped[float | None] = mapped_column(Float, nullable=True)
    line_ratio: Mapped[float | None] = mapped_column(Float, nullable=True, doc="median over channels")
    emg_ratio: Mapped[float | None] = mapped_column(Float, nullable=True, doc="median over channels")
    drift_ratio: Mapped[float | None] = mapped_column(Float, nullable=True, doc="median over channels")
    max_kurtosis: Mapped[float | None] = mapped_column(Float, nullable=True, doc="largest |excess kurtosis|")
    stage: Mapped[str | None] = mapped_column(String(4), nullable=True, index=True, doc="W, N1, N2, N3, REM")
    p_w: Mapped[float | None] = mapped_column(Float, nullable=True)
    p_n1: Mapped[float | None] = mapped_column(Float, nullable=True)
    p_n2: Mapped[float | None] = mapped_column(Float, nullable=True)
    p_n3: Mapped[float | None] = mapped_column(Float, nullable=True)
    p_rem: Mapped[float | None] = mapped_column(Float, nullable=True)


class EpochSummary(Base):
    """Counts and histograms of the epochs of one recording in one shard (see
    :mod:`ephys.catalog.summary`), written and deleted with those epochs."""

    __tablename__ = "epoch_summaries"
    __table_args__ = (UniqueConstraint("shard_id", "recording_id", name="uq_epoch_summary_shard_recording"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shard_id: Mapped[int] = mapped_column(ForeignKey("shards.id"), index=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    n_epochs: Mapped[int] = mapped_column(Integer)
    n_valid: Mapped[int] = mapped_column(Integer)
    n_scored: Mapped[int] = mapped_column(Integer, doc="epochs with a quality score")
    n_staged: Mapped[int] = mapped_column(Integer, doc="epochs with a sleep stage")
    figures_json: Mapped[str] = mapped_column(Text, doc="score and ratio histograms, epochs per stage")


class Annotation(Base):
    __tablename__ = "annotations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    onset_s: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    author: Mapped[str | None] = mapped_column(String(32), nullable=True, doc="keyed pseudonym of the annotating user")
    code: Mapped[str | None] = mapped_column(String(64), nullable=True, doc="the format's event code or type GUID")
    category: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True, doc="taxonomy category")
    subcategory: Mapped[str | None] = mapped_column(String(64), nullable=True)
    keyword: Mapped[str | None] = mapped_column(String(128), nullable=True, doc="taxonomy keyword that matched")
    negated: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    uncertain: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    match_score: Mapped[float | None] = mapped_column(Float, nullable=True, doc="100 exact, lower fuzzy")


class AnnotationSidecar(Base):
    """A seizure list or annotation table found beside recordings (:mod:`ephys.ingest.sidecars`)
    and what became of its entries: attached to a recording (``annotations`` rows with source
    ``sidecar:FORMAT``) or not, with the reason. Named by a path hash, never by its path."""

    __tablename__ = "annotation_sidecars"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path_hash: Mapped[str] = mapped_column(String(64), unique=True, doc="HMAC-SHA-256 (site secret) of the archive-relative path")
    sha256: Mapped[str] = mapped_column(String(64), doc="SHA-256 of the file's content")
    format: Mapped[str] = mapped_column(String(16), doc="chbmit, siena or tsv")
    n_entries: Mapped[int] = mapped_column(Integer)
    n_attached: Mapped[int] = mapped_column(Integer)
    n_recordings: Mapped[int] = mapped_column(Integer, doc="recordings it attached annotations to")
    problems_json: Mapped[str] = mapped_column(Text, doc='[[entry number, reason], ...]: entries not attached or clipped')
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
