"""Shadow scoring: what the challenger answered to the requests the served version answered.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadow_predictions",
        sa.Column("request_id", sa.Uuid(), primary_key=True),
        sa.Column("model_version", sa.Integer(), primary_key=True),
        sa.Column("row_index", sa.Integer(), primary_key=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("shadowed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("score", sa.Float()),
        sa.Column("prediction", sa.String(256)),
        sa.Column("threshold", sa.Float()),
        sa.Column("base_value", sa.Float()),
        sa.Column("contributions", sa.JSON().with_variant(JSONB(), "postgresql")),
    )
    op.create_index("ix_shadow_predictions_shadowed_at", "shadow_predictions", ["shadowed_at"])


def downgrade() -> None:
    op.drop_index("ix_shadow_predictions_shadowed_at", table_name="shadow_predictions")
    op.drop_table("shadow_predictions")
