"""Append a batch job's predictions to the prediction log: one request (endpoint `batch`), all its rows.

Rows are written in chunks, each in its own transaction; if any chunk fails, the job's rows and its
request are deleted again, so the log holds all of a batch or none of it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from logstore.database import first_line, safe_url
from logstore.errors import StoreUnavailable
from logstore.records import logged_id
from logstore.store import forget_request, write_log

CHUNK_ROWS = 5_000
OUTPUTS = ("score", "prediction", "threshold", "base_value", "contributions", "unseen_categories", "reasons")


def prediction_row(
    request_id: uuid.UUID,
    index: int,
    scored: Mapping[str, Any],
    *,
    id_column: str,
    inputs: list[str],
    hmac_key: bytes | None,
) -> dict[str, Any]:
    """The `inference_predictions` row of one scored row (its input as sent, id pseudonymised if keyed)."""
    entity = scored[id_column]
    entity_id = logged_id(entity, hmac_key)
    sent = {name: scored[name] for name in inputs}
    sent[id_column] = entity_id if hmac_key is not None else entity
    return {
        "request_id": request_id,
        "row_index": index,
        "entity_id": entity_id,
        "input": sent,
        **{name: scored.get(name) for name in OUTPUTS},
    }


def append_batch(
    engine: Engine,
    rows: Iterable[Mapping[str, Any]],
    *,
    request: Mapping[str, Any],
    id_column: str,
    inputs: list[str],
    hmac_key: bytes | None,
    progress: Callable[[int], None] = lambda _: None,
) -> int:
    """Write the request, then its rows chunk by chunk; the number of rows. All or nothing."""
    request_id: uuid.UUID = request["request_id"]
    written = 0
    try:
        write_log(engine, requests=[dict(request)], predictions=[])
        remaining = iter(rows)
        while chunk := list(islice(remaining, CHUNK_ROWS)):
            predictions = [
                prediction_row(
                    request_id, written + i, row, id_column=id_column, inputs=inputs, hmac_key=hmac_key
                )
                for i, row in enumerate(chunk)
            ]
            write_log(engine, requests=[], predictions=predictions)
            written += len(predictions)
            progress(written)
    except BaseException as exc:
        with contextlib.suppress(SQLAlchemyError):  # The first error is the one to report.
            forget_request(engine, request_id=request_id)
        if isinstance(exc, SQLAlchemyError):
            raise StoreUnavailable(
                f"cannot append the batch to {safe_url(engine)}: {first_line(exc)}"
            ) from exc
        raise
    return written


def batch_request(
    request_id: uuid.UUID,
    *,
    started: datetime,
    model_name: str,
    model_version: int,
    target: str,
    seconds: float,
    rows: int,
) -> dict[str, Any]:
    """The `inference_requests` row of a batch job."""
    return {
        "request_id": request_id,
        "received_at": started,
        "key_id": None,
        "endpoint": "batch",
        "model_name": model_name,
        "model_version": model_version,
        "model_target": target,
        "status_code": 200,
        "total_ms": seconds * 1000.0,
        "upstream_ms": None,
        "n_rows": rows,
        "error": None,
        "client_request_id": None,
        "input_error": None,
        "batch_requests": 1,
        "batch_rows": rows,
        "queue_ms": None,
    }
