"""Erasures: when a person's rows were erased, by whom and how many, never whose.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("erasure_id", sa.Uuid, primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_by", sa.String(256), nullable=False),
        sa.Column("model_name", sa.String(256)),
        sa.Column("predictions", sa.Integer, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("outcomes", sa.Integer, nullable=False),
        sa.Column("shadow_rows", sa.Integer, nullable=False),
        sa.Column("entities", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erasures")
