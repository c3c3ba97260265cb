"""recordings: age, sex and shifted start; recording_paths: every path a recording was found at

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("age_years", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sex", sa.String(1), nullable=True))
        batch.add_column(sa.Column("start_time", sa.DateTime(), nullable=True))
    op.create_table(
        "recording_paths",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("recording_id", sa.Integer(), sa.ForeignKey("recordings.id"), nullable=False),
        sa.Column("path_hash", sa.String(64), nullable=False),
        sa.Column("relpath", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id"), nullable=True),
        sa.UniqueConstraint("recording_id", "path_hash", name="uq_recording_path"),
    )
    op.create_index("ix_recording_paths_recording_id", "recording_paths", ["recording_id"])
    # Existing recordings: the one path each row already holds.
    op.execute(
        "INSERT INTO recording_paths (recording_id, path_hash, relpath, run_id) "
        "SELECT id, path_hash, relpath, run_id FROM recordings"
    )


def downgrade() -> None:
    op.drop_index("ix_recording_paths_recording_id", "recording_paths")
    op.drop_table("recording_paths")
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("start_time")
        batch.drop_column("sex")
        batch.drop_column("age_years")
