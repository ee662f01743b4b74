"""Turn a spooled exchange (request body, response body, metadata) into log-store rows."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import math
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NotRequired, TypedDict

import orjson
import pandas as pd

from logstore.formats import read

logger = logging.getLogger(__name__)

Row = dict[str, Any]
# The writer parses at most this much of a body, with at most this many columns: a larger body is
# logged with its predictions but without its input rows (`input_error` says why), so no body a
# client sends can make the writer's memory grow without bound.
MAX_PARSED_CHARS = 8 * 2**20
MAX_PARSED_COLUMNS = 1024
JSON_TYPE = "application/json"


def decode_body(content_type: str, body: bytes) -> str:
    """A request body as text; JSON in the encoding its bytes declare (UTF-8, with BOM or not, UTF-16/32)."""
    if content_type.split(";", maxsplit=1)[0].strip().lower() == JSON_TYPE:
        return body.decode(json.detect_encoding(body), errors="replace")
    return body.decode("utf-8-sig", errors="replace")


class Exchange(TypedDict):
    """What one answered or refused request is, as the proxy saw it: the `request` of a spool record."""

    request_id: str  # Our own id, the key of its row.
    client_request_id: str | None  # The X-Request-ID the client sent, if any.
    received_at: str  # ISO 8601.
    key_id: str | None
    endpoint: str
    model_name: str
    model_version: int | None
    model_target: str
    status_code: int
    total_ms: float
    upstream_ms: float | None
    error: str | None
    # The backend call that answered it (absent in records spooled before batching, and when unsent).
    batch_requests: NotRequired[int | None]
    batch_rows: NotRequired[int | None]
    queue_ms: NotRequired[float | None]


class SpoolRecord(TypedDict):
    """One line of the spool: an exchange, its bodies, and what reading its rows needs."""

    request: Exchange
    content_type: str
    body: str  # Empty when the body is too large to be parsed (then `body_bytes` says how large).
    body_bytes: NotRequired[int]
    response: str | None
    id_column: str | None


def spool_record(
    exchange: Exchange,
    *,
    content_type: str,
    body: bytes,
    response: bytes | None,
    id_column: str | None,
) -> SpoolRecord:
    """The spool record of one exchange; a body too large to be parsed later is not copied into it."""
    record = SpoolRecord(
        request=exchange, content_type=content_type, body="",
        response=None if response is None else response.decode("utf-8", errors="replace"),
        id_column=id_column,
    )  # fmt: skip
    if len(body) > MAX_PARSED_CHARS:
        record["body_bytes"] = len(body)
    else:
        record["body"] = decode_body(content_type, body)
    return record


class ShadowCall(TypedDict):
    """What the challenger answered to one request the served version answered: a spool record's `shadow`."""

    request_id: str  # The shadowed request's own id.
    model_name: str
    model_version: int
    shadowed_at: str  # ISO 8601.
    latency_ms: float
    error: str | None
    response: str | None  # The challenger's JSON answer, when it answered 200.


def _answer(output: Mapping[str, Any]) -> Row:
    """One row's answer as both the served and the shadow tables store it."""
    return {
        "score": float(output["score"]),
        "prediction": str(output["prediction"]),
        "threshold": float(output["threshold"]),
        "base_value": output.get("base_value"),
        "contributions": output.get("contributions"),
        "reasons": output.get("reasons"),
    }


def shadow_record(call: ShadowCall) -> dict[str, ShadowCall]:
    """The spool record of one shadow call."""
    return {"shadow": call}


def shadow_rows(call: Mapping[str, Any]) -> list[Row]:
    """The `shadow_predictions` rows of one shadow call: one per row answered, or one with its error."""
    common = {
        "request_id": uuid.UUID(call["request_id"]),
        "model_version": int(call["model_version"]),
        "model_name": call["model_name"],
        "shadowed_at": datetime.fromisoformat(call["shadowed_at"]),
        "latency_ms": float(call["latency_ms"]),
    }
    outputs: list[Any] = []
    error = call.get("error")
    if error is None:
        try:
            parsed = _json(call.get("response") or "")
            outputs = parsed["predictions"] if isinstance(parsed, dict) else []
        except (ValueError, KeyError, TypeError):
            error = "the challenger's answer is not MLflow's JSON with `predictions`"
    rows = [
        {
            **common,
            "row_index": index,
            "error": None,
            **_answer(output),
        }
        for index, output in enumerate(outputs)
        if isinstance(output, dict)
    ]
    if rows:
        return rows
    return [{**common, "row_index": 0, "error": error or "the challenger answered no predictions"}]


class Unreadable(ValueError):
    """A body the writer does not parse into input rows; the message says why."""


def _json(text: str) -> Any:
    try:
        return orjson.loads(text)  # Several times faster than json on a large answer.
    except orjson.JSONDecodeError:
        # MLflow accepts NaN and Infinity; JSON columns cannot hold them, so they are stored as null.
        return json.loads(text, parse_constant=lambda _: None)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_rows(body: str) -> list[Row]:
    header = next(csv.reader(io.StringIO(body.partition("\n")[0])), [])
    if len(header) > MAX_PARSED_COLUMNS:
        raise Unreadable(f"input not stored: the CSV has {len(header)} columns, over {MAX_PARSED_COLUMNS}")
    frame = pd.read_csv(io.StringIO(body))
    return [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _too_wide(rows: list[Row]) -> list[Row]:
    if any(len(row) > MAX_PARSED_COLUMNS for row in rows):
        raise Unreadable(f"input not stored: a row has over {MAX_PARSED_COLUMNS} columns")
    return rows


def input_rows(content_type: str, body: str) -> list[Row]:
    """The rows of a request in CSV or an MLflow JSON format; [] for none; `Unreadable` if too large."""
    if len(body) > MAX_PARSED_CHARS:
        raise Unreadable(f"input not stored: the body has {len(body)} characters, over {MAX_PARSED_CHARS}")
    return _too_wide(_parsed_rows(content_type, body))


def _parsed_rows(content_type: str, body: str) -> list[Row]:
    try:
        if content_type.split(";", maxsplit=1)[0].strip().lower() == "text/csv":
            return _csv_rows(body)
        payload = _json(body)
        # The proxy's own reader: what it checked is what is stored; a body it refused has no rows.
        return [row for _, row in read(payload)] if isinstance(payload, dict) else []
    except Unreadable:
        raise
    except (ValueError, TypeError, RecursionError, pd.errors.ParserError):
        return []


def pseudonym(entity_id: str, key: bytes) -> str:
    """Keyed hash of an entity id (HMAC-SHA256, hex)."""
    return hmac.new(key, entity_id.encode("utf-8"), hashlib.sha256).hexdigest()


def logged_id(entity: Any, hmac_key: bytes | None) -> str | None:
    """An entity id as the log stores it: as text, or its pseudonym when a key is set."""
    if entity is None:
        return None
    return str(entity) if hmac_key is None else pseudonym(str(entity), hmac_key)


def to_rows(record: Mapping[str, Any], *, hmac_key: bytes | None) -> tuple[Row, list[Row]]:
    """The `inference_requests` row and `inference_predictions` rows of one spooled exchange."""
    meta = record["request"]
    request_id = uuid.UUID(meta["request_id"])
    client_id = meta.get("client_request_id")
    id_column = record.get("id_column")
    inputs: list[Row] = []
    input_error = None
    if (size := record.get("body_bytes")) is not None:
        input_error = f"input not stored: the body has {size} bytes, over {MAX_PARSED_CHARS}"
    else:
        try:
            inputs = input_rows(record.get("content_type") or "", record.get("body") or "")
        except Unreadable as exc:
            input_error = str(exc)
    outputs: list[Row] = []
    if record.get("response"):
        try:
            parsed = _json(record["response"])
            outputs = parsed["predictions"] if isinstance(parsed, dict) else []
        except (ValueError, KeyError, TypeError):
            logger.warning(
                "log: request %s has an unreadable response; its predictions are not stored", request_id
            )
    predictions = []
    for index, output in enumerate(outputs):
        if not isinstance(output, dict):
            continue
        row = inputs[index] if index < len(inputs) else None
        entity = output.get(id_column) if id_column else None
        if entity is None and row is not None and id_column:
            entity = row.get(id_column)
        entity_id = logged_id(entity, hmac_key)
        if entity_id is not None and hmac_key is not None and row is not None and id_column in row:
            row = {**row, id_column: entity_id}
        answer = _answer(output)
        answer.update(
            request_id=request_id, row_index=index, entity_id=entity_id, input=row,
            unseen_categories=output.get("unseen_categories"),
        )  # fmt: skip
        predictions.append(answer)
    request = {
        "request_id": request_id,
        "received_at": datetime.fromisoformat(meta["received_at"]),
        "key_id": meta.get("key_id"),
        "endpoint": meta["endpoint"],
        "model_name": meta["model_name"],
        "model_version": meta.get("model_version"),
        "model_target": meta["model_target"],
        "status_code": meta["status_code"],
        "total_ms": meta["total_ms"],
        "upstream_ms": meta.get("upstream_ms"),
        "n_rows": len(predictions) or len(inputs),
        "error": meta.get("error"),
        "client_request_id": None if client_id is None else uuid.UUID(client_id),
        "input_error": input_error,
        "batch_requests": meta.get("batch_requests"),
        "batch_rows": meta.get("batch_rows"),
        "queue_ms": meta.get("queue_ms"),
    }
    return request, predictions
