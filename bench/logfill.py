"""A scratch prediction log filled as the proxy fills it: one request a row, inputs and answers as JSON.

The model scores a pool of dataset rows once; each logged request is one of them under its own request
id and time, with an outcome for a share of rows and, optionally, a challenger's answer beside it. The
rows go through `logstore.records.to_rows` and `logstore.store.write_log`, the proxy writer's own code.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PyFuncModel, scoring_server
from sqlalchemy import Engine

from logstore.records import shadow_rows, to_rows
from logstore.store import write_log
from logstore.tables import inference_outcomes

BATCH = 5_000  # Requests written in one transaction.


def served_json(predictions: Any) -> str:
    """The body MLflow's scoring server answers for these predictions."""
    buffer = io.StringIO()
    scoring_server.predictions_to_json(predictions, buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class Pool:
    """Dataset rows as a client sends them, one request body each, with the served (and shadow) answer."""

    model_name: str
    version: int
    bodies: list[str]
    answers: list[str]
    positive: np.ndarray  # The row's observed outcome (the dataset's target).
    shadow_version: int | None = None
    shadow_answers: list[str] | None = None


def pool(
    model: PyFuncModel,
    frame: pd.DataFrame,
    *,
    model_name: str,
    version: int,
    positive: np.ndarray,
    challenger: PyFuncModel | None = None,
    shadow_version: int | None = None,
) -> Pool:
    """Score `frame` (inputs and id) once with the served model and, if given, the challenger."""

    def answers(scorer: PyFuncModel) -> list[str]:
        outputs = pd.DataFrame(scorer.predict(frame))
        return [served_json(outputs.iloc[[i]].reset_index(drop=True)) for i in range(len(frame))]

    bodies = [
        frame.iloc[[i]].to_json(orient="split", index=False).join(['{"dataframe_split":', "}"])
        for i in range(len(frame))
    ]
    return Pool(
        model_name, version, bodies, answers(model), np.asarray(positive, dtype=bool),
        shadow_version, answers(challenger) if challenger is not None else None,
    )  # fmt: skip


def _record(found: Pool, index: int, at: datetime, id_column: str | None) -> dict[str, Any]:
    return {
        "request": {
            "request_id": str(uuid.uuid4()), "client_request_id": None, "received_at": at.isoformat(),
            "key_id": "bench", "endpoint": "/invocations", "model_name": found.model_name,
            "model_version": found.version, "model_target": f"models:/{found.model_name}@production",
            "status_code": 200, "total_ms": 12.0, "upstream_ms": 10.0, "error": None,
            "batch_requests": 1, "batch_rows": 1, "queue_ms": 0.0,
        },
        "content_type": "application/json", "body": found.bodies[index],
        "response": found.answers[index], "id_column": id_column,
    }  # fmt: skip


def records(
    found: Pool, *, rows: int, start: datetime, span: timedelta, id_column: str | None, seed: int = 0
) -> Iterator[tuple[dict[str, Any], int]]:
    """`rows` spool records evenly spread over `span` from `start`, each with the pool row it repeats."""
    picks = np.random.default_rng(seed).integers(0, len(found.bodies), rows)
    step = span / max(rows, 1)
    for number, index in enumerate(picks):
        yield _record(found, int(index), start + step * number, id_column), int(index)


def fill(
    engine: Engine,
    found: Pool,
    *,
    rows: int,
    start: datetime,
    span: timedelta,
    id_column: str | None,
    labelled_share: float = 0.3,
    hmac_key: bytes | None = None,
    seed: int = 0,
) -> None:
    """Write `rows` logged requests (and outcomes, and shadow rows when the pool has a challenger)."""
    rng = np.random.default_rng(seed + 1)
    batch: list[tuple[dict[str, Any], int]] = []
    for item in records(found, rows=rows, start=start, span=span, id_column=id_column, seed=seed):
        batch.append(item)
        if len(batch) == BATCH:
            _write(engine, found, batch, rng=rng, labelled_share=labelled_share, hmac_key=hmac_key)
            batch = []
    if batch:
        _write(engine, found, batch, rng=rng, labelled_share=labelled_share, hmac_key=hmac_key)


def _write(
    engine: Engine,
    found: Pool,
    batch: list[tuple[dict[str, Any], int]],
    *,
    rng: np.random.Generator,
    labelled_share: float,
    hmac_key: bytes | None,
) -> None:
    requests, predictions, shadows, outcomes = [], [], [], []
    for record, index in batch:
        request, rows = to_rows(record, hmac_key=hmac_key)
        requests.append(request)
        predictions += rows
        meta = record["request"]
        if found.shadow_answers is not None and found.shadow_version is not None:
            shadows += shadow_rows(
                {"request_id": meta["request_id"], "model_name": found.model_name,
                 "model_version": found.shadow_version, "shadowed_at": meta["received_at"],
                 "latency_ms": 11.0, "error": None, "response": found.shadow_answers[index]}
            )  # fmt: skip
        if rng.random() < labelled_share:
            outcomes.append(
                {"outcome_id": uuid.uuid4(), "request_id": request["request_id"], "row_index": 0,
                 "label": "1" if found.positive[index] else "0", "positive": bool(found.positive[index]),
                 "observed_at": None, "recorded_at": request["received_at"] + timedelta(days=30),
                 "source": "bench"}
            )  # fmt: skip
    write_log(engine, requests=requests, predictions=predictions, shadows=shadows)
    if outcomes:
        with engine.begin() as connection:
            connection.execute(inference_outcomes.insert(), outcomes)
