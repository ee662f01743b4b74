"""Spool records into log-store rows: every MLflow input format, pseudonyms, failed requests."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from logstore.records import input_rows, pseudonym, to_rows

COLUMNS = ["employee_id", "Age", "OverTime"]
ROWS = [{"employee_id": 1, "Age": 41, "OverTime": "Yes"}, {"employee_id": 2, "Age": 49, "OverTime": "No"}]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "application/json",
            {"dataframe_split": {"columns": COLUMNS, "data": [[1, 41, "Yes"], [2, 49, "No"]]}},
        ),
        ("application/json", {"dataframe_records": ROWS}),
        ("application/json", {"instances": ROWS}),
        ("application/json", {"inputs": {"employee_id": [1, 2], "Age": [41, 49], "OverTime": ["Yes", "No"]}}),
        ("text/csv; charset=utf-8", "employee_id,Age,OverTime\n1,41,Yes\n2,49,No\n"),
    ],
)
def test_input_rows_reads_every_mlflow_format(content_type: str, body: Any) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    assert input_rows(content_type, text) == ROWS


def test_input_rows_turns_nan_into_null_and_garbage_into_nothing() -> None:
    assert input_rows("application/json", '{"dataframe_records": [{"Age": NaN}]}') == [{"Age": None}]
    assert input_rows("application/json", "not json") == []
    assert input_rows("application/json", "[1, 2]") == []
    # The proxy's own reader: a body it refuses has no rows in the log either.
    assert input_rows("application/json", '{"inputs": [[1, 41, "Yes"]]}') == []
    assert input_rows("application/json", '{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}') == []
    assert input_rows("application/json", '{"dataframe_records": [{"a": 1}], "rows": 1}') == []


def _record(**response: Any) -> dict[str, Any]:
    return {
        "request": {
            "request_id": str(uuid.uuid4()), "received_at": datetime.now(UTC).isoformat(), "key_id": "ops",
            "endpoint": "/invocations", "model_name": "m", "model_version": 3, "model_target": "@production",
            "status_code": 200, "total_ms": 5.0, "upstream_ms": 4.0, "error": None,
        },
        "content_type": "application/json",
        "body": json.dumps({"dataframe_records": ROWS}),
        "response": json.dumps(response),
        "id_column": "employee_id",
    }  # fmt: skip


def test_to_rows_pairs_inputs_with_predictions_and_pseudonymises() -> None:
    outputs = [
        {"employee_id": i, "score": 0.5, "prediction": "Yes", "threshold": 0.4, "base_value": -1.0,
         "contributions": {"Age": 0.1}}
        for i in (1, 2)
    ]  # fmt: skip
    request, predictions = to_rows(_record(predictions=outputs), hmac_key=b"k")
    assert request["n_rows"] == 2 and request["model_version"] == 3
    assert [p["entity_id"] for p in predictions] == [pseudonym("1", b"k"), pseudonym("2", b"k")]
    assert predictions[1]["input"] == {**ROWS[1], "employee_id": pseudonym("2", b"k")}
    assert predictions[0]["contributions"] == {"Age": 0.1}
    _, plain = to_rows(_record(predictions=outputs), hmac_key=None)
    assert [p["entity_id"] for p in plain] == ["1", "2"]


def test_to_rows_of_a_failed_request_keeps_the_request_only() -> None:
    record = _record()
    record["response"] = None
    record["request"].update(status_code=400, error="Model is missing inputs ['Age'].")
    request, predictions = to_rows(record, hmac_key=None)
    assert predictions == [] and request["n_rows"] == 2 and request["status_code"] == 400
