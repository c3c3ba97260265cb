"""Seizure lists and annotation tables found beside recordings, and what became of their entries

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "annotation_sidecars",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("n_entries", sa.Integer(), nullable=False),
        sa.Column("n_attached", sa.Integer(), nullable=False),
        sa.Column("n_recordings", sa.Integer(), nullable=False),
        sa.Column("problems_json", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id"), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("annotation_sidecars")
