"""Reason codes: the top risk-raising features a request asked for (params.reasons), logged with each answer.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("inference_predictions", "shadow_predictions")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("reasons", sa.JSON().with_variant(JSONB(), "postgresql")))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "reasons")
