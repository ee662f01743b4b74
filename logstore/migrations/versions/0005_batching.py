"""How a request reached the model: the size of the backend call that answered it, and its wait for it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inference_requests", sa.Column("batch_requests", sa.Integer()))
    op.add_column("inference_requests", sa.Column("batch_rows", sa.Integer()))
    op.add_column("inference_requests", sa.Column("queue_ms", sa.Float()))


def downgrade() -> None:
    op.drop_column("inference_requests", "queue_ms")
    op.drop_column("inference_requests", "batch_rows")
    op.drop_column("inference_requests", "batch_requests")
