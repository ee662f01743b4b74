"""Reads of the prediction log for monitoring: logged rows with their latest observed outcome."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, func, select

from logstore.tables import inference_outcomes, inference_predictions, inference_requests

COLUMNS = [
    "request_id", "row_index", "received_at", "model_version", "input", "score", "prediction",
    "threshold", "contributions", "unseen_categories", "actual",
]  # fmt: skip


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
    ranked = select(
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
    if since is not None:
        query = query.where(inference_requests.c.received_at >= since)
    if until is not None:
        query = query.where(inference_requests.c.received_at < until)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pd.DataFrame([tuple(row) for row in rows], columns=COLUMNS)
