"""Per-(shard, recording) epoch summaries, so corpus figures do not scan every epoch

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "epoch_summaries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("shard_id", sa.Integer(), sa.ForeignKey("shards.id"), nullable=False),
        sa.Column("recording_id", sa.Integer(), sa.ForeignKey("recordings.id"), nullable=False),
        sa.Column("n_epochs", sa.Integer(), nullable=False),
        sa.Column("n_valid", sa.Integer(), nullable=False),
        sa.Column("n_scored", sa.Integer(), nullable=False),
        sa.Column("n_staged", sa.Integer(), nullable=False),
        sa.Column("figures_json", sa.Text(), nullable=False),
        sa.UniqueConstraint("shard_id", "recording_id", name="uq_epoch_summary_shard_recording"),
    )
    op.create_index("ix_epoch_summaries_shard_id", "epoch_summaries", ["shard_id"])
    op.create_index("ix_epoch_summaries_recording_id", "epoch_summaries", ["recording_id"])
    # Existing epochs get their summaries now: one grouped scan, binned in SQL.
    from ephys.catalog.summary import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_epoch_summaries_recording_id", "epoch_summaries")
    op.drop_index("ix_epoch_summaries_shard_id", "epoch_summaries")
    op.drop_table("epoch_summaries")
