"""Unseen categories flagged per logged prediction.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("inference_predictions", sa.Column("unseen_categories", Json))


def downgrade() -> None:
    op.drop_column("inference_predictions", "unseen_categories")
