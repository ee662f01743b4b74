"""Reads of the prediction log for monitoring, in chunks: no job holds every logged row at once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, Select, func, select

from logstore.store import latest_outcome
from logstore.tables import inference_outcomes, inference_predictions, inference_requests, shadow_predictions

# Rows a chunk holds: about 11 KiB each with their inputs and contributions, so some 50 MiB a chunk.
CHUNK_ROWS = 5_000
PREDICTION_COLUMNS = {
    "request_id": inference_predictions.c.request_id,
    "row_index": inference_predictions.c.row_index,
    "received_at": inference_requests.c.received_at,
    "model_version": inference_requests.c.model_version,
    "input": inference_predictions.c.input,
    "score": inference_predictions.c.score,
    "prediction": inference_predictions.c.prediction,
    "threshold": inference_predictions.c.threshold,
    "contributions": inference_predictions.c.contributions,
    "unseen_categories": inference_predictions.c.unseen_categories,
}


def _served(model_name: str, version: int | None) -> Select[Any]:
    """The filter every read of answered rows shares: one model (one version, or all), answered 200."""
    query = select().where(
        inference_requests.c.model_name == model_name, inference_requests.c.status_code == 200
    )
    return query if version is None else query.where(inference_requests.c.model_version == version)


def predictions(
    engine: Engine,
    *,
    model_name: str,
    version: int | None,
    since: datetime | None,
    until: datetime | None,
    columns: Sequence[str],
    labelled_only: bool = False,
) -> Iterator[pd.DataFrame]:
    """Answered rows of a model in a time window, in chunks; `actual` (if asked) is the latest label."""
    wanted = [PREDICTION_COLUMNS[name].label(name) for name in columns if name != "actual"]
    query = (
        _served(model_name, version)
        .add_columns(*wanted)
        .select_from(inference_predictions)
        .join(inference_requests, inference_requests.c.request_id == inference_predictions.c.request_id)
    )
    if "actual" in columns or labelled_only:
        actual = latest_outcome(
            inference_outcomes.c.positive,
            request_id=inference_predictions.c.request_id,
            row_index=inference_predictions.c.row_index,
        )
        query = query.add_columns(actual.label("actual"))
        if labelled_only:
            query = query.where(actual.is_not(None))
    return _chunks(engine, query, since=since, until=until)


def count(
    engine: Engine, *, model_name: str, version: int | None, since: datetime | None, until: datetime | None
) -> int:
    """How many answered rows a model (or version) has in the window."""
    query = (
        _served(model_name, version)
        .add_columns(func.count())
        .select_from(inference_predictions)
        .join(inference_requests, inference_requests.c.request_id == inference_predictions.c.request_id)
    )
    with engine.connect() as connection:
        return int(connection.execute(_window(query, since, until)).scalar_one())


def _window(query: Select[Any], since: datetime | None, until: datetime | None) -> Select[Any]:
    if since is not None:
        query = query.where(inference_requests.c.received_at >= since)
    if until is not None:
        query = query.where(inference_requests.c.received_at < until)
    return query


def _chunks(
    engine: Engine, query: Select[Any], *, since: datetime | None, until: datetime | None
) -> Iterator[pd.DataFrame]:
    """The rows of a query on logged requests within a window of their received time, chunk by chunk."""
    query = _window(query, since, until)
    names = [column.name for column in query.selected_columns]
    with engine.connect() as connection:
        # A server-side cursor on PostgreSQL: the database hands over one chunk at a time.
        result = connection.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
        for rows in result.partitions():
            yield pd.DataFrame([tuple(row) for row in rows], columns=names)


def shadow_pairs(
    engine: Engine, *, model_name: str, since: datetime | None, until: datetime | None
) -> dict[tuple[int, int], int]:
    """Shadowed rows per (served version, challenger version) in a time window."""
    query = (
        select(inference_requests.c.model_version, shadow_predictions.c.model_version, func.count())
        .select_from(shadow_predictions)
        .join(inference_requests, inference_requests.c.request_id == shadow_predictions.c.request_id)
        .where(shadow_predictions.c.model_name == model_name)
        .group_by(inference_requests.c.model_version, shadow_predictions.c.model_version)
    )
    with engine.connect() as connection:
        found = connection.execute(_window(query, since, until)).all()
    return {(int(served), int(shadow)): int(rows) for served, shadow, rows in found if served is not None}


def shadowed(
    engine: Engine,
    *,
    model_name: str,
    champion: int,
    challenger: int,
    since: datetime | None,
    until: datetime | None,
) -> Iterator[pd.DataFrame]:
    """The rows one challenger shadowed of one served version in a time window, in time order, in chunks."""
    served = inference_predictions
    shadow = shadow_predictions
    query = (
        select(
            shadow.c.request_id,
            shadow.c.row_index,
            inference_requests.c.received_at,
            inference_requests.c.model_version,
            inference_requests.c.upstream_ms,
            served.c.score,
            served.c.threshold,
            served.c.contributions,
            shadow.c.model_version.label("shadow_version"),
            shadow.c.score.label("shadow_score"),
            shadow.c.threshold.label("shadow_threshold"),
            shadow.c.contributions.label("shadow_contributions"),
            shadow.c.error.label("shadow_error"),
            shadow.c.latency_ms.label("shadow_latency_ms"),
            latest_outcome(
                inference_outcomes.c.positive, request_id=shadow.c.request_id, row_index=shadow.c.row_index
            ).label("actual"),
        )
        .join(inference_requests, inference_requests.c.request_id == shadow.c.request_id)
        .join(
            served,
            (served.c.request_id == shadow.c.request_id) & (served.c.row_index == shadow.c.row_index),
            isouter=True,
        )
        .where(
            shadow.c.model_name == model_name,
            inference_requests.c.model_version == champion,
            shadow.c.model_version == challenger,
        )
        # A request's rows stay together, so its latency is counted once however the chunks fall.
        .order_by(inference_requests.c.received_at, shadow.c.request_id, shadow.c.row_index)
    )
    return _chunks(engine, query, since=since, until=until)
