"""Persistence functions of the log store; they know nothing of HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Engine, ScalarSelect, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from logstore.bulk import copy_rows
from logstore.tables import (
    entities,
    inference_outcomes,
    inference_predictions,
    inference_requests,
    shadow_predictions,
)

Row = dict[str, Any]
COPY_ROWS = 50  # From this many rows of a table on, PostgreSQL gets them by COPY.


def _insert(engine: Engine, table: Table) -> postgresql.Insert | sqlite.Insert:
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def write_log(
    engine: Engine, *, requests: Sequence[Row], predictions: Sequence[Row], shadows: Sequence[Row] = ()
) -> None:
    """Insert requests, predictions and shadow rows in one transaction; rows already stored are skipped."""
    tables = (
        (inference_requests, requests),
        (inference_predictions, predictions),
        (shadow_predictions, shadows),
    )
    with engine.begin() as connection:
        for table, rows in tables:
            if engine.dialect.name == "postgresql" and len(rows) >= COPY_ROWS:
                try:
                    with connection.begin_nested():
                        copy_rows(connection, table, rows)
                except IntegrityError:  # Some were stored before (a replayed segment): skip those.
                    pass
                else:
                    continue
            if rows:
                connection.execute(_insert(engine, table).on_conflict_do_nothing(), list(rows))


def forget_request(engine: Engine, *, request_id: uuid.UUID) -> None:
    """Delete one request and its predictions (a batch that failed half-way); SQLite has no cascade."""
    with engine.begin() as connection:
        connection.execute(
            delete(inference_predictions).where(inference_predictions.c.request_id == request_id)
        )
        connection.execute(delete(inference_requests).where(inference_requests.c.request_id == request_id))


def latest_outcome(column: Column[Any], *, request_id: Any, row_index: Any) -> ScalarSelect[Any]:
    """A column of a logged row's latest observed outcome, or null: one index lookup a row.

    A correlated subquery rather than a join on a ranked window: its cost never depends on the
    planner's row estimates, which are far off right after a bulk load.
    """
    return (
        select(column)
        .where(inference_outcomes.c.request_id == request_id, inference_outcomes.c.row_index == row_index)
        .order_by(inference_outcomes.c.recorded_at.desc())
        .limit(1)
        .scalar_subquery()
    )


def _prediction_columns() -> list[Any]:
    return [
        inference_predictions.c.request_id,
        inference_predictions.c.row_index,
        inference_requests.c.received_at,
        inference_requests.c.model_name,
        inference_requests.c.model_version,
        inference_predictions.c.entity_id,
        inference_predictions.c.score,
        inference_predictions.c.prediction,
        inference_predictions.c.threshold,
        inference_predictions.c.base_value,
        inference_predictions.c.contributions,
        inference_predictions.c.unseen_categories,
        inference_predictions.c.reasons,
        inference_predictions.c.input,
    ]


def latest_predictions(
    engine: Engine, *, limit: int, model_name: str | None = None, model_version: int | None = None
) -> list[Row]:
    """The newest logged predictions, newest first."""
    query = (
        select(*_prediction_columns())
        .join(inference_requests, inference_requests.c.request_id == inference_predictions.c.request_id)
        .order_by(inference_requests.c.received_at.desc(), inference_predictions.c.row_index)
        .limit(limit)
    )
    if model_name is not None:
        query = query.where(inference_requests.c.model_name == model_name)
    if model_version is not None:
        query = query.where(inference_requests.c.model_version == model_version)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def get_request(engine: Engine, *, request_id: uuid.UUID) -> Row | None:
    """One logged request with its predictions, or None."""
    with engine.connect() as connection:
        request = connection.execute(
            select(inference_requests).where(inference_requests.c.request_id == request_id)
        ).first()
        if request is None:
            return None
        rows = connection.execute(
            select(inference_predictions)
            .where(inference_predictions.c.request_id == request_id)
            .order_by(inference_predictions.c.row_index)
        )
        return {**request._mapping, "predictions": [dict(row._mapping) for row in rows]}


def get_entity(engine: Engine, *, model_name: str, entity_id: str) -> dict[str, Any] | None:
    """The stored raw features of one entity, or None."""
    with engine.connect() as connection:
        features = connection.execute(
            select(entities.c.features).where(
                entities.c.model_name == model_name, entities.c.entity_id == entity_id
            )
        ).scalar_one_or_none()
    return dict(features) if features is not None else None


def upsert_entities(engine: Engine, *, model_name: str, features: Mapping[str, Mapping[str, Any]]) -> int:
    """Store each entity's features under its id, replacing earlier ones; returns the count."""
    now = datetime.now(UTC)
    rows = [
        {"model_name": model_name, "entity_id": entity_id, "features": dict(values), "loaded_at": now}
        for entity_id, values in features.items()
    ]
    if not rows:
        return 0
    statement = _insert(engine, entities)
    statement = statement.on_conflict_do_update(
        index_elements=[entities.c.model_name, entities.c.entity_id],
        set_={"features": statement.excluded.features, "loaded_at": statement.excluded.loaded_at},
    )
    with engine.begin() as connection:
        connection.execute(statement, rows)
    return len(rows)


def find_prediction(
    engine: Engine,
    *,
    model_name: str,
    request_id: uuid.UUID | None = None,
    row_index: int = 0,
    entity_id: str | None = None,
) -> Row | None:
    """A logged prediction by request and row, or the latest one of an entity; None if not logged."""
    query = (
        select(
            inference_predictions.c.request_id,
            inference_predictions.c.row_index,
            inference_requests.c.model_version,
            inference_predictions.c.prediction,
        )
        .join(inference_requests, inference_requests.c.request_id == inference_predictions.c.request_id)
        .where(inference_requests.c.model_name == model_name)
    )
    if request_id is not None:
        query = query.where(
            inference_predictions.c.request_id == request_id, inference_predictions.c.row_index == row_index
        )
    else:
        query = (
            query.where(inference_predictions.c.entity_id == entity_id)
            .order_by(inference_requests.c.received_at.desc(), inference_predictions.c.row_index.desc())
            .limit(1)
        )
    with engine.connect() as connection:
        found = connection.execute(query).first()
    return None if found is None else dict(found._mapping)


def record_outcomes(engine: Engine, *, outcomes: Sequence[Row]) -> list[str | None]:
    """Append observed labels in one transaction; for each, the label it replaces, or None."""
    replaced = []
    with engine.begin() as connection:
        for outcome in outcomes:
            replaced.append(
                connection.execute(
                    select(inference_outcomes.c.label)
                    .where(
                        inference_outcomes.c.request_id == outcome["request_id"],
                        inference_outcomes.c.row_index == outcome["row_index"],
                    )
                    .order_by(inference_outcomes.c.recorded_at.desc())
                    .limit(1)
                ).scalar_one_or_none()
            )
            connection.execute(
                inference_outcomes.insert(),
                {"outcome_id": uuid.uuid4(), "recorded_at": datetime.now(UTC), **outcome},
            )
    return replaced
