"""Reads of the prediction log for monitoring: logged rows with their latest observed outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, Select, Subquery, func, select

from logstore.tables import inference_outcomes, inference_predictions, inference_requests, shadow_predictions

COLUMNS = [
    "request_id", "row_index", "received_at", "model_version", "input", "score", "prediction",
    "threshold", "contributions", "unseen_categories", "actual",
]  # fmt: skip


def _latest_outcomes() -> Subquery:
    """Each labelled row's latest label."""
    return select(
        inference_outcomes.c.request_id,
        inference_outcomes.c.row_index,
        inference_outcomes.c.positive,
        func.row_number()
        .over(
            partition_by=[inference_outcomes.c.request_id, inference_outcomes.c.row_index],
            order_by=inference_outcomes.c.recorded_at.desc(),
        )
        .label("rank"),
    ).subquery()


def predictions(
    engine: Engine,
    *,
    model_name: str,
    version: int | None,
    since: datetime | None,
    until: datetime | None,
    labelled_only: bool = False,
) -> pd.DataFrame:
    """Answered rows of a model (one version, or all), in a time window; `actual` is the latest label."""
    ranked = _latest_outcomes()
    query = (
        select(
            inference_predictions.c.request_id,
            inference_predictions.c.row_index,
            inference_requests.c.received_at,
            inference_requests.c.model_version,
            inference_predictions.c.input,
            inference_predictions.c.score,
            inference_predictions.c.prediction,
            inference_predictions.c.threshold,
            inference_predictions.c.contributions,
            inference_predictions.c.unseen_categories,
            ranked.c.positive.label("actual"),
        )
        .join(inference_requests, inference_requests.c.request_id == inference_predictions.c.request_id)
        .join(
            ranked,
            (ranked.c.request_id == inference_predictions.c.request_id)
            & (ranked.c.row_index == inference_predictions.c.row_index)
            & (ranked.c.rank == 1),
            isouter=not labelled_only,
        )
        .where(inference_requests.c.model_name == model_name, inference_requests.c.status_code == 200)
        .order_by(inference_requests.c.received_at, inference_predictions.c.row_index)
    )
    if version is not None:
        query = query.where(inference_requests.c.model_version == version)
    return _fetch(engine, query, since=since, until=until, columns=COLUMNS)


def _fetch(
    engine: Engine, query: Select[Any], *, since: datetime | None, until: datetime | None, columns: list[str]
) -> pd.DataFrame:
    """The rows of a query on logged requests, within a window of their received time."""
    if since is not None:
        query = query.where(inference_requests.c.received_at >= since)
    if until is not None:
        query = query.where(inference_requests.c.received_at < until)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pd.DataFrame([tuple(row) for row in rows], columns=columns)


SHADOW_COLUMNS = [
    "request_id", "row_index", "received_at", "model_version", "upstream_ms", "score", "threshold",
    "contributions", "shadow_version", "shadow_score", "shadow_threshold", "shadow_contributions",
    "shadow_error", "shadow_latency_ms", "actual",
]  # fmt: skip


def shadowed(
    engine: Engine, *, model_name: str, since: datetime | None, until: datetime | None
) -> pd.DataFrame:
    """Every shadowed row of a model in a time window: the served answer beside the challenger's."""
    ranked = _latest_outcomes()
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
            shadow.c.model_version,
            shadow.c.score,
            shadow.c.threshold,
            shadow.c.contributions,
            shadow.c.error,
            shadow.c.latency_ms,
            ranked.c.positive,
        )
        .join(inference_requests, inference_requests.c.request_id == shadow.c.request_id)
        .join(
            served,
            (served.c.request_id == shadow.c.request_id) & (served.c.row_index == shadow.c.row_index),
            isouter=True,
        )
        .join(
            ranked,
            (ranked.c.request_id == shadow.c.request_id)
            & (ranked.c.row_index == shadow.c.row_index)
            & (ranked.c.rank == 1),
            isouter=True,
        )
        .where(shadow.c.model_name == model_name)
        .order_by(inference_requests.c.received_at, shadow.c.row_index)
    )
    return _fetch(engine, query, since=since, until=until, columns=SHADOW_COLUMNS)
