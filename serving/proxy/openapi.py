"""What the OpenAPI schema says of the routes FastAPI cannot describe: raw MLflow bodies and our errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from serving.proxy.validation import CSV_TYPE, JSON_TYPE


class ErrorBody(BaseModel):
    """Every error answer: MLflow's shape, without a stack trace."""

    error_code: str
    message: str


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route."""
    reasons = {400: "the request does not fit the model", 401: "missing or wrong X-API-Key",
               404: "not found", 413: "body over SERVING_MAX_BODY_BYTES", 415: "media type not accepted",
               500: "the model failed", 503: "the model server or the log store is unavailable",
               504: "the model did not answer in time"}  # fmt: skip
    return {status: {"model": ErrorBody, "description": reasons[status]} for status in statuses}


_ROW: dict[str, Any] = {"type": "object", "description": "column: value, as the model's signature types them"}
_PARAMS: dict[str, Any] = {"type": "object", "description": "the model's params (GET /model lists them)"}
INVOCATIONS_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        JSON_TYPE: {
            "schema": {
                "description": "MLflow's scoring protocol: exactly one input format, and optional params",
                "type": "object",
                "properties": {
                    "dataframe_split": {
                        "type": "object",
                        "properties": {
                            "columns": {"type": "array", "items": {"type": "string"}},
                            "data": {"type": "array", "items": {"type": "array"}},
                        },
                        "required": ["columns", "data"],
                    },
                    "dataframe_records": {"type": "array", "items": _ROW},
                    "instances": {"type": "array", "items": _ROW},
                    "inputs": {"type": "array", "items": _ROW},
                    "params": _PARAMS,
                },
                "additionalProperties": False,
            }
        },
        CSV_TYPE: {"schema": {"type": "string", "description": "a header row of column names, then rows"}},
    },
}
BY_ID_BODY: dict[str, Any] = {
    "required": False,
    "content": {
        JSON_TYPE: {
            "schema": {"type": "object", "properties": {"params": _PARAMS}, "additionalProperties": False}
        }
    },
}
PREDICTIONS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "one prediction per row: score, label, threshold, base value, unseen categories, contributions"
        ),
        "content": {
            JSON_TYPE: {
                "schema": {
                    "type": "object",
                    "properties": {"predictions": {"type": "array", "items": {"type": "object"}}},
                    "required": ["predictions"],
                }
            }
        },
    }
}
