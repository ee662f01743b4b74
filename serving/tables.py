"""The log store's tables; Alembic migrations in `serving/migrations` create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()
Json = JSON().with_variant(JSONB(), "postgresql")

inference_requests = Table(
    "inference_requests",
    metadata,
    Column("request_id", Uuid, primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("key_id", String(64)),
    Column("endpoint", String(200), nullable=False),
    Column("model_name", String(256), nullable=False),
    Column("model_version", Integer),
    Column("model_target", String(256), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("total_ms", Float, nullable=False),
    Column("upstream_ms", Float),
    Column("n_rows", Integer, nullable=False),
    Column("error", Text),
    Index("ix_inference_requests_received_at", "received_at"),
    Index("ix_inference_requests_model", "model_name", "model_version"),
)

inference_predictions = Table(
    "inference_predictions",
    metadata,
    Column(
        "request_id",
        Uuid,
        ForeignKey("inference_requests.request_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("row_index", Integer, primary_key=True),
    Column("entity_id", String(256)),
    Column("input", Json),
    Column("score", Float, nullable=False),
    Column("prediction", String(256), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("base_value", Float),
    Column("contributions", Json),
    Index("ix_inference_predictions_entity_id", "entity_id"),
)

entities = Table(
    "entities",
    metadata,
    Column("model_name", String(256), primary_key=True),
    Column("entity_id", String(256), primary_key=True),
    Column("features", Json, nullable=False),
    Column("loaded_at", DateTime(timezone=True), nullable=False),
)
