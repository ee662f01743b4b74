"""Large batches of prediction rows go to PostgreSQL by COPY: the same rows as INSERT, replays skipped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError

from logstore.bulk import copy_text
from logstore.database import make_engine, migrate
from logstore.store import COPY_ROWS, write_log
from logstore.tables import inference_predictions, inference_requests

TRICKY = ["tab\there", "new\nline", "back\\slash", "cr\r", "\\N", "", "é ü ☃", 'quote "x"']


def _rows(request_id: uuid.UUID, count: int) -> list[dict[str, Any]]:
    return [
        {
            "request_id": request_id, "row_index": n,
            "entity_id": None if n % 5 == 0 else TRICKY[n % len(TRICKY)],
            # 2**70: a number a `double` column takes that orjson cannot write (json does).
            "input": {"Department": TRICKY[(n + 1) % len(TRICKY)], "Age": n, "rate": 0.1 * n, "none": None,
                      "big": 2**70},
            "score": 1 / (n + 3), "prediction": "Yes" if n % 2 else "No", "threshold": 0.3141592653589793,
            "base_value": None if n == 1 else -1.25e-7, "contributions": {"Age": 1e-20 * n, "line\n": -0.5},
            "unseen_categories": [] if n % 3 else ["Department"],
            "reasons": None if n % 2 else [{"code": "TAB\t", "feature": "Age", "value": TRICKY[n % 3],
                                            "statement": "Early\nin life", "contribution": 0.5}],
        }
        for n in range(count)
    ]  # fmt: skip


def _request(request_id: uuid.UUID) -> dict[str, Any]:
    return {
        "request_id": request_id, "received_at": datetime.now(UTC), "key_id": None,
        "endpoint": "/invocations",
        "model_name": "m", "model_version": 1, "model_target": "@production", "status_code": 200,
        "total_ms": 1.0, "upstream_ms": 1.0, "n_rows": 0, "error": None,
    }  # fmt: skip


def test_copy_text_escapes_what_copy_would_read_otherwise() -> None:
    [row] = _rows(uuid.UUID(int=1), 2)[1:]
    line = copy_text([column.name for column in inference_predictions.columns], [row])
    assert line.endswith("\n") and line.count("\n") == 1 and line.count("\t") == 10
    fields = line[:-1].split("\t")
    assert fields[0] == "00000000-0000-0000-0000-000000000001" and fields[1] == "1"
    assert fields[2] == "new\\nline" and fields[7] == "\\N"  # Escaped newline; NULL.
    assert fields[4] == repr(0.25) and fields[6] == "0.3141592653589793"
    assert '"line\\\\n":-0.5' in fields[8]  # JSON's own escape, its backslash escaped for COPY.


@pytest.mark.parametrize("count", [COPY_ROWS, 3])  # By COPY, and below the bound by INSERT: the same rows.
def test_large_batches_are_copied_as_inserted_and_replays_skip_stored_rows(
    postgres_url: str, count: int
) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    request_id = uuid.uuid4()
    rows = _rows(request_id, count)
    write_log(engine, requests=[_request(request_id)], predictions=rows)
    write_log(engine, requests=[_request(request_id)], predictions=rows)  # A replayed spool segment.
    with engine.connect() as connection:
        stored = [
            dict(row._mapping)
            for row in connection.execute(
                select(inference_predictions).order_by(inference_predictions.c.row_index)
            )
        ]
    engine.dispose()
    assert stored == rows


def test_many_requests_are_copied_with_their_times_and_errors_as_inserted(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    requests = [
        {**_request(uuid.uuid4()), "error": TRICKY[n % len(TRICKY)], "client_request_id": uuid.uuid4(),
         "batch_requests": n % 7 or None, "batch_rows": n, "queue_ms": 0.1 * n}
        for n in range(COPY_ROWS + 10)
    ]  # fmt: skip
    write_log(engine, requests=requests, predictions=[])
    write_log(engine, requests=requests[:3], predictions=[])  # A replay of some: skipped.
    with engine.connect() as connection:
        stored = {
            row.request_id: dict(row._mapping) for row in connection.execute(select(inference_requests))
        }
    engine.dispose()
    assert len(stored) == len(requests)
    for request in requests:
        assert {key: stored[request["request_id"]][key] for key in request} == request


def test_content_the_database_refuses_is_a_data_error_as_with_insert(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    request_id = uuid.uuid4()
    rows = _rows(request_id, COPY_ROWS)
    rows[7]["prediction"] = "x" * 300  # Longer than the column's 256 characters.
    with pytest.raises(DataError):
        write_log(engine, requests=[_request(request_id)], predictions=rows)
    engine.dispose()
