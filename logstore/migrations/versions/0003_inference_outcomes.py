"""Observed outcomes (labels) of logged predictions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inference_outcomes",
        sa.Column("outcome_id", sa.Uuid(), primary_key=True),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(256), nullable=False),
        sa.Column("positive", sa.Boolean(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True)),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id", "row_index"],
            ["inference_predictions.request_id", "inference_predictions.row_index"],
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_inference_outcomes_prediction", "inference_outcomes", ["request_id", "row_index", "recorded_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_inference_outcomes_prediction", "inference_outcomes")
    op.drop_table("inference_outcomes")
