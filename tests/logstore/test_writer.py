"""The writer against a real PostgreSQL: a refused record is set aside, its request still stored."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from logstore import store
from logstore.database import make_engine, migrate
from logstore.spool import Spool
from logstore.writer import LogWriter
from serving.proxy.metrics import Metrics

COLUMNS = ["employee_id", "Age", "OverTime"]


PREDICTION = {"employee_id": 1, "score": 0.2, "prediction": "No", "threshold": 0.5}


def test_a_record_the_database_refuses_is_set_aside_and_its_request_still_stored(
    postgres_url: str, tmp_path: Path
) -> None:
    # An answer the database refuses: a label longer than the column's 256 characters.
    engine = make_engine(postgres_url)
    migrate(engine)
    spool = Spool(tmp_path, max_bytes=10**6)
    record: dict[str, Any] = {
        "request": {
            "request_id": str(uuid.uuid4()), "received_at": datetime.now(UTC).isoformat(), "key_id": "ops",
            "endpoint": "/invocations", "model_name": "m", "model_version": 1, "model_target": "@production",
            "status_code": 200, "total_ms": 5.0, "upstream_ms": 4.0, "error": None,
        },
        "content_type": "text/csv", "body": "employee_id,Age,OverTime\n1,41,Yes\n",
        "response": json.dumps({"predictions": [{**PREDICTION, "prediction": "x" * 300}]}),
        "id_column": "employee_id",
    }  # fmt: skip
    good: dict[str, Any] = {
        **record,
        "request": {**record["request"], "request_id": str(uuid.uuid4())},
        "body": "",
        "response": json.dumps({"predictions": [PREDICTION]}),
    }
    spool.append(record)
    spool.append(good)
    metrics = Metrics(spool_bytes=lambda: spool.size, spool_records=lambda: spool.records)
    writer = LogWriter(spool, engine, flush_seconds=60, hmac_key=None, events=metrics)
    assert writer.flush()
    refused = store.get_request(engine, request_id=uuid.UUID(record["request"]["request_id"]))
    assert refused is not None and refused["status_code"] == 200 and refused["predictions"] == []
    assert "rows not stored, the log store refused them" in refused["input_error"]
    kept = store.get_request(engine, request_id=uuid.UUID(good["request"]["request_id"]))
    assert kept is not None and len(kept["predictions"]) == 1
    assert record["request"]["request_id"] in (tmp_path / "rejected.ndjson").read_text()
    assert "serving_log_records_rejected_total 1.0" in metrics.exposition().decode()
    spool.close()
    engine.dispose()
