"""QC figures and quality score per epoch, bad channels per recording, sleep stages, annotation taxonomy labels

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

EPOCH_COLUMNS = [
    ("score", sa.Float()),
    ("n_artifact", sa.Integer()),
    ("max_ptp_uv", sa.Float()),
    ("line_ratio", sa.Float()),
    ("emg_ratio", sa.Float()),
    ("drift_ratio", sa.Float()),
    ("max_kurtosis", sa.Float()),
    ("stage", sa.String(4)),
    ("p_w", sa.Float()),
    ("p_n1", sa.Float()),
    ("p_n2", sa.Float()),
    ("p_n3", sa.Float()),
    ("p_rem", sa.Float()),
]
RECORDING_COLUMNS = [
    ("n_bad_channels", sa.Integer()),
    ("bad_channels_json", sa.Text()),
    ("stager", sa.String(64)),
    ("staging_channels", sa.String(128)),
]
ANNOTATION_COLUMNS = [
    ("category", sa.String(32)),
    ("subcategory", sa.String(64)),
    ("keyword", sa.String(128)),
    ("negated", sa.Boolean()),
    ("uncertain", sa.Boolean()),
    ("match_score", sa.Float()),
]


def upgrade() -> None:
    for table, cols in (("epochs", EPOCH_COLUMNS), ("recordings", RECORDING_COLUMNS), ("annotations", ANNOTATION_COLUMNS)):
        with op.batch_alter_table(table) as batch:
            for name, type_ in cols:
                batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_index("ix_epochs_score", "epochs", ["score"])
    op.create_index("ix_epochs_stage", "epochs", ["stage"])
    op.create_index("ix_annotations_category", "annotations", ["category"])


def downgrade() -> None:
    op.drop_index("ix_annotations_category", "annotations")
    op.drop_index("ix_epochs_stage", "epochs")
    op.drop_index("ix_epochs_score", "epochs")
    for table, cols in (("epochs", EPOCH_COLUMNS), ("recordings", RECORDING_COLUMNS), ("annotations", ANNOTATION_COLUMNS)):
        with op.batch_alter_table(table) as batch:
            for name, _ in reversed(cols):
                batch.drop_column(name)
