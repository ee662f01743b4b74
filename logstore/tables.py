"""The log store's tables; Alembic migrations in `logstore/migrations` create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
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
Json = JSON().with_variant(JSONB(), "postgresql")  # Looked up by key: the entities' features.
# Written once per row and read whole: PostgreSQL's json (checked text) costs half of jsonb to write.
Document = JSON()

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
    Column("client_request_id", Uuid),  # The X-Request-ID a client sent: its own, not unique.
    Column("input_error", Text),  # Why the input rows were not stored (a body too large to parse).
    # The backend call that answered it: requests and rows merged into it (1 and n_rows when alone).
    Column("batch_requests", Integer),
    Column("batch_rows", Integer),
    Column("queue_ms", Float),  # Time it waited for that call (natural batching).
    Index("ix_inference_requests_received_at", "received_at"),
    Index("ix_inference_requests_model", "model_name", "model_version"),
    Index("ix_inference_requests_client_request_id", "client_request_id"),
)

inference_predictions = Table(
    "inference_predictions",
    metadata,
    # No foreign key: the writer stores a request and its rows in one transaction, and a check per row
    # cost a quarter of PostgreSQL's time to ingest them; retention and erasure delete rows explicitly.
    Column("request_id", Uuid, primary_key=True),
    Column("row_index", Integer, primary_key=True),
    Column("entity_id", String(256)),
    Column("input", Document),
    Column("score", Float, nullable=False),
    Column("prediction", String(256), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("base_value", Float),
    Column("contributions", Document),
    Column("unseen_categories", Document),  # Categorical features whose value training never saw.
    Column("reasons", Document),  # Reason codes, when the request asked for them (params.reasons).
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

# Append-only: a second label for a row is a new row, the latest counts, the history stays.
inference_outcomes = Table(
    "inference_outcomes",
    metadata,
    Column("outcome_id", Uuid, primary_key=True),
    Column("request_id", Uuid, nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("label", String(256), nullable=False),
    Column("positive", Boolean, nullable=False),
    Column("observed_at", DateTime(timezone=True)),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("source", String(32), nullable=False),
    ForeignKeyConstraint(
        ["request_id", "row_index"],
        ["inference_predictions.request_id", "inference_predictions.row_index"],
        ondelete="CASCADE",
    ),
    Index("ix_inference_outcomes_prediction", "request_id", "row_index", "recorded_at"),
)

# What a challenger (the version `SERVING_SHADOW` names) answered to a request the served version
# answered: one row per input row, or one row with `error` when the shadow call failed.
shadow_predictions = Table(
    "shadow_predictions",
    metadata,
    Column("request_id", Uuid, primary_key=True),  # The shadowed request, in inference_requests.
    Column("model_version", Integer, primary_key=True),
    Column("row_index", Integer, primary_key=True),
    Column("model_name", String(256), nullable=False),
    Column("shadowed_at", DateTime(timezone=True), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("error", Text),
    Column("score", Float),
    Column("prediction", String(256)),
    Column("threshold", Float),
    Column("base_value", Float),
    Column("contributions", Document),
    Column("reasons", Document),
    Index("ix_shadow_predictions_shadowed_at", "shadowed_at"),
)

# Who was erased is never recorded: only when, by whom, from which model and how many rows.
erasures = Table(
    "erasures",
    metadata,
    Column("erasure_id", Uuid, primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False),
    Column("erased_by", String(256), nullable=False),
    Column("model_name", String(256)),  # None: every model.
    Column("predictions", Integer, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("outcomes", Integer, nullable=False),
    Column("shadow_rows", Integer, nullable=False),
    Column("entities", Integer, nullable=False),
)
