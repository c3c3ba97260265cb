"""initial catalog: meta, runs, recordings, shards, epochs, annotations

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("code_version", sa.String(32), nullable=False),
        sa.Column("processing_hash", sa.String(16), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("n_discovered", sa.Integer(), nullable=False),
        sa.Column("n_skipped", sa.Integer(), nullable=False),
        sa.Column("n_ok", sa.Integer(), nullable=False),
        sa.Column("n_rejected", sa.Integer(), nullable=False),
        sa.Column("n_failed", sa.Integer(), nullable=False),
        sa.Column("eeg_hours", sa.Float(), nullable=False),
        sa.Column("wall_s", sa.Float(), nullable=False),
    )
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("n_files", sa.Integer(), nullable=False),
        sa.Column("path_hash", sa.String(64), nullable=False),
        sa.Column("relpath", sa.Text(), nullable=True),
        sa.Column("file_bytes", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(32), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("n_channels", sa.Integer(), nullable=True),
        sa.Column("n_eeg_channels", sa.Integer(), nullable=True),
        sa.Column("sfreq", sa.Float(), nullable=True),
        sa.Column("channels_json", sa.Text(), nullable=False),
        sa.Column("montage", sa.String(16), nullable=True),
        sa.Column("output_channels_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_stage", sa.String(16), nullable=True),
        sa.Column("failure_code", sa.String(32), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("n_epochs", sa.Integer(), nullable=False),
        sa.Column("n_valid_epochs", sa.Integer(), nullable=False),
        sa.Column("n_packed", sa.Integer(), nullable=False),
        sa.Column("n_annotations", sa.Integer(), nullable=False),
        sa.Column("n_scrubbed", sa.Integer(), nullable=False),
        sa.Column("processing_hash", sa.String(16), nullable=False),
        sa.Column("seconds_json", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id"), nullable=True),
        sa.Column("processed_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_recordings_sha256", "recordings", ["sha256"], unique=True)
    op.create_index("ix_recordings_format", "recordings", ["format"])
    op.create_index("ix_recordings_subject", "recordings", ["subject"])
    op.create_index("ix_recordings_status", "recordings", ["status"])
    op.create_index("ix_recordings_failure_code", "recordings", ["failure_code"])
    op.create_table(
        "shards",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("index", sa.Integer(), nullable=False, unique=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("n_bytes", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "epochs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("recording_id", sa.Integer(), sa.ForeignKey("recordings.id"), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("shard_id", sa.Integer(), sa.ForeignKey("shards.id"), nullable=False),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("n_flat", sa.Integer(), nullable=False),
        sa.Column("n_clipped", sa.Integer(), nullable=False),
        sa.Column("nonfinite", sa.Boolean(), nullable=False),
        sa.Column("max_abs_uv", sa.Float(), nullable=False),
        sa.Column("mask", sa.String(128), nullable=False),
        sa.UniqueConstraint("recording_id", "index", name="uq_epoch_recording_index"),
    )
    op.create_index("ix_epochs_recording_id", "epochs", ["recording_id"])
    op.create_index("ix_epochs_shard_id", "epochs", ["shard_id"])
    op.create_index("ix_epochs_valid", "epochs", ["valid"])
    op.create_table(
        "annotations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("recording_id", sa.Integer(), sa.ForeignKey("recordings.id"), nullable=False),
        sa.Column("onset_s", sa.Float(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
    )
    op.create_index("ix_annotations_recording_id", "annotations", ["recording_id"])


def downgrade() -> None:
    for table in ("annotations", "epochs", "shards", "recordings", "runs", "meta"):
        op.drop_table(table)
