"""Each request's own log key: the id a client sent is kept beside it; why input rows were not stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inference_requests", sa.Column("client_request_id", sa.Uuid()))
    op.add_column("inference_requests", sa.Column("input_error", sa.Text()))
    op.create_index("ix_inference_requests_client_request_id", "inference_requests", ["client_request_id"])


def downgrade() -> None:
    op.drop_index("ix_inference_requests_client_request_id", "inference_requests")
    op.drop_column("inference_requests", "input_error")
    op.drop_column("inference_requests", "client_request_id")
