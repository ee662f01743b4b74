"""Inference log and entity tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "inference_requests",
        sa.Column("request_id", sa.Uuid(), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.Integer()),
        sa.Column("model_target", sa.String(256), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("total_ms", sa.Float(), nullable=False),
        sa.Column("upstream_ms", sa.Float()),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_inference_requests_received_at", "inference_requests", ["received_at"])
    op.create_index("ix_inference_requests_model", "inference_requests", ["model_name", "model_version"])
    op.create_table(
        "inference_predictions",
        sa.Column(
            "request_id",
            sa.Uuid(),
            sa.ForeignKey("inference_requests.request_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("row_index", sa.Integer(), primary_key=True),
        sa.Column("entity_id", sa.String(256)),
        sa.Column("input", Json),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("prediction", sa.String(256), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("base_value", sa.Float()),
        sa.Column("contributions", Json),
    )
    op.create_index("ix_inference_predictions_entity_id", "inference_predictions", ["entity_id"])
    op.create_table(
        "entities",
        sa.Column("model_name", sa.String(256), primary_key=True),
        sa.Column("entity_id", sa.String(256), primary_key=True),
        sa.Column("features", Json, nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("entities")
    op.drop_index("ix_inference_predictions_entity_id", "inference_predictions")
    op.drop_table("inference_predictions")
    op.drop_index("ix_inference_requests_model", "inference_requests")
    op.drop_index("ix_inference_requests_received_at", "inference_requests")
    op.drop_table("inference_requests")
