"""Unit tests of the serving parts that need no server: records, errors, keys, spool, settings, schema."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from mlflow.tracking import MlflowClient
from pydantic import ValidationError
from sqlalchemy import create_engine

from logstore import store
from logstore.database import make_engine, migrate
from logstore.errors import SpoolFull, StoreConfigError
from logstore.records import input_rows, pseudonym, to_rows
from logstore.spool import Spool
from logstore.tables import metadata
from logstore.writer import LogWriter
from serving import backend as backends
from serving.auth import identify, parse_keys
from serving.errors import BackendTimeout, ConfigurationError, Unauthenticated, Unavailable
from serving.metrics import Metrics
from serving.registry import ModelInfo, resolve
from serving.runtime import Runtime
from serving.settings import ServingSettings
from serving.upstream import clean_message, translate
from tests.conftest import subprocess_env
from tests.serving.conftest import free_port

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


def test_clean_message_keeps_the_reason_and_drops_echoed_data_and_traces() -> None:
    nested = (
        "Failed to predict data '   Age\n0  41'. \nError: Failed to enforce schema of data '  Age' "
        "with schema '[Age: long]'. Error: Model is missing inputs ['OverTime'].\n"
        "Traceback (most recent call last):\n  File"
    )
    assert clean_message(nested) == "Model is missing inputs ['OverTime']."
    converted = "Invalid input. Failed to convert column Age to type 'int64'. Error: 'ValueError(\"bad\")'"
    assert clean_message(converted) == converted


def test_translate_maps_statuses() -> None:
    body = json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad", "stack_trace": "Traceback"})
    client_error = translate(400, body.encode())
    assert (client_error.status_code, client_error.error_code, client_error.message) == (
        400, "INVALID_PARAMETER_VALUE", "bad",
    )  # fmt: skip
    assert translate(415, b"This predictor only supports ...").status_code == 415
    assert isinstance(translate(504, b"Request processing time exceeded limit"), BackendTimeout)
    assert translate(500, b"{}").status_code == 500


def test_api_keys_need_ids() -> None:
    keys = parse_keys(["ops:0123456789abcdef", "next:fedcba9876543210"])
    assert identify(keys, "0123456789abcdef") == "ops"
    assert identify(keys, "fedcba9876543210") == "next"
    assert identify([], None) is None
    for presented in (None, "", "0123456789abcdeX"):
        with pytest.raises(Unauthenticated):
            identify(keys, presented)
    for bare in ("fedcba9876543210", ":fedcba9876543210"):  # Never an id derived from the secret alone.
        with pytest.raises(ConfigurationError, match="entry 2 has no id; write it as key_id:secret"):
            parse_keys(["ops:0123456789abcdef", bare])
    with pytest.raises(ConfigurationError, match="shorter than 16"):
        parse_keys(["ops:short"])
    with pytest.raises(ConfigurationError, match="share an id"):
        parse_keys(["a:0123456789abcdef", "a:fedcba9876543210"])


def test_backend_access_log_is_off_unless_the_environment_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UVICORN_ACCESS_LOG", raising=False)
    assert backends.access_log_env() == {"UVICORN_ACCESS_LOG": "false"}
    monkeypatch.setenv("UVICORN_ACCESS_LOG", "true")
    assert backends.access_log_env() == {"UVICORN_ACCESS_LOG": "true"}


def test_settings_read_the_environment_and_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("API_KEYS", "a:0123456789abcdef, b:fedcba9876543210")
    monkeypatch.setenv("SERVING_SPOOL_FULL", "drop")
    settings = ServingSettings(model="attrition")
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.api_keys == ["a:0123456789abcdef", "b:fedcba9876543210"]
    assert settings.target == "@production" and settings.spool_full == "drop"
    assert ServingSettings(model="m", stage="Production").target == "/Production"
    with pytest.raises(ValidationError, match="either alias or stage"):
        ServingSettings(model="m", alias="a", stage="Staging")
    monkeypatch.setenv("SERVING_SPOOL_FULL", "ignore")
    with pytest.raises(ValidationError, match="spool_full"):
        ServingSettings(model="m")


def test_spool_appends_seals_replays_and_is_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200)
    spool.append({"n": 1})
    with pytest.raises(StoreConfigError, match="in use"):
        Spool(tmp_path, max_bytes=200)
    segments = spool.seal()
    assert [list(Spool.read(s)) for s in segments] == [[{"n": 1}]]
    spool.append({"n": 2})
    with pytest.raises(SpoolFull):
        spool.append({"n": "x" * 300})
    spool.close()
    with (tmp_path / segments[-1].name).open("a") as torn:
        torn.write('{"n": 3, "cut')
    again = Spool(tmp_path, max_bytes=200)
    replay = [record for segment in again.seal() for record in Spool.read(segment)]
    assert replay == [{"n": 1}, {"n": 2}]
    for segment in again.seal():
        again.discard(segment)
    assert again.size == 0
    again.close()


def _info() -> ModelInfo:
    return ModelInfo(
        name="m", version=1, target="@production", stage=None, aliases=[], run_id=None, threshold=None,
        metrics={}, inputs=[{"type": "long", "name": "employee_id", "required": False}], params=[],
    )  # fmt: skip


def _runtime(tmp_path: Path, **changes: Any) -> Runtime:
    settings = ServingSettings(model="m", spool_dir=tmp_path / "spool", **changes)
    engine = make_engine(f"sqlite:///{tmp_path}/log.db")
    migrate(engine)
    spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes)
    metrics = Metrics(spool_bytes=lambda: spool.size, spool_records=lambda: spool.records)
    writer = LogWriter(spool, engine, flush_seconds=60, hmac_key=None, events=metrics)
    return Runtime(
        settings, engine=engine, spool=spool, writer=writer, keys=[], client=MlflowClient(), metrics=metrics
    )


def test_drop_policy_keeps_serving_and_counts_what_it_dropped(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path, spool_full="drop", spool_max_bytes=1500)
    body = json.dumps({"dataframe_records": ROWS}).encode()
    for _ in range(5):
        runtime.log(
            request_id=str(uuid.uuid4()), client_request_id=None, received_at=datetime.now(UTC), key_id=None,
            endpoint="/invocations",
            backend=None, status_code=200, total_ms=1.0, upstream_ms=1.0, content_type="application/json",
            body=body, response=None, error=None,
        )  # fmt: skip
    assert runtime.dropped_records > 0
    assert runtime.spool.size <= 1500
    asyncio.run(runtime.close())


def test_the_queue_gauges_follow_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    metrics = Metrics(spool_bytes=lambda: spool.size, spool_records=lambda: spool.records)

    def gauge(name: str) -> float:
        line = next(x for x in metrics.exposition().decode().splitlines() if x.startswith(name + " "))
        return float(line.split()[1])

    for n in range(3):
        spool.append({"n": n})
    assert (gauge("serving_log_queue_records"), gauge("serving_spool_bytes")) == (3, spool.size) != (3, 0)
    spool.close()
    again = Spool(tmp_path, max_bytes=10_000)  # A restart counts what an earlier run left.
    metrics = Metrics(spool_bytes=lambda: again.size, spool_records=lambda: again.records)
    assert gauge("serving_log_queue_records") == 3
    for segment in again.seal():
        again.discard(segment)
    assert (gauge("serving_log_queue_records"), gauge("serving_spool_bytes")) == (0, 0)
    again.close()


def test_logging_off_spools_nothing_and_ignores_a_full_spool(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path, log_requests=False, spool_max_bytes=10)
    for _ in range(3):
        runtime.log(
            request_id=str(uuid.uuid4()), client_request_id=None, received_at=datetime.now(UTC), key_id=None,
            endpoint="/invocations",
            backend=None, status_code=200, total_ms=1.0, upstream_ms=1.0, content_type="application/json",
            body=json.dumps({"dataframe_records": ROWS}).encode(), response=None, error=None,
        )  # fmt: skip
    assert runtime.spool.size == 0 and runtime.dropped_records == 0
    asyncio.run(runtime.close())


def test_backend_timeout_and_connection_errors_become_504_and_503(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path, backend_timeout_seconds=0.5)
    held: list[asyncio.StreamWriter] = []

    async def scenario() -> None:
        # A backend that accepts the connection and never answers, and a port nobody listens on.
        silent = await asyncio.start_server(lambda _r, w: held.append(w), "127.0.0.1", 0)
        silent_port = silent.sockets[0].getsockname()[1]
        for port, error in ((silent_port, BackendTimeout), (free_port(), Unavailable)):
            backend = backends.Backend(info=_info(), url=f"http://127.0.0.1:{port}", process=None)  # type: ignore[arg-type]
            runtime.backend = backend
            with pytest.raises(error):
                await runtime.forward(b"{}", "application/json")
            assert backend.inflight == 0
        for writer in held:
            writer.close()
        silent.close()
        runtime.backend = None
        with pytest.raises(Unavailable, match="not running"):
            await runtime.forward(b"{}", "application/json")
        await runtime.close()

    asyncio.run(scenario())


def test_migrations_create_exactly_the_declared_tables(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    migrate(engine)
    migrate(engine)  # Idempotent at head.
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    engine.dispose()


def test_replicas_starting_together_migrate_a_fresh_database_once(postgres_url: str) -> None:
    script = (
        "import sys; from logstore.database import make_engine, migrate; migrate(make_engine(sys.argv[1]))"
    )
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", script, postgres_url], env=subprocess_env(), stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    for replica in replicas:
        _, errors = replica.communicate(timeout=120)
        assert replica.returncode == 0, errors.decode()
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    engine.dispose()


def test_resolve_follows_an_alias_or_a_stage(client: MlflowClient, production: str) -> None:
    assert resolve(client, "attrition", alias="production", stage=None) == int(production)
    assert resolve(client, "attrition", alias=None, stage="Production") == int(production)
    with pytest.raises(ConfigurationError, match="no-such-alias"):
        resolve(client, "attrition", alias="no-such-alias", stage=None)


PREDICTION = {"employee_id": 1, "score": 0.2, "prediction": "No", "threshold": 0.5}


def test_a_record_the_database_refuses_is_set_aside_and_its_request_still_stored(
    postgres_url: str, tmp_path: Path
) -> None:
    # A spool from before CSV bodies with NUL were refused: PostgreSQL's JSONB cannot hold \u0000.
    engine = make_engine(postgres_url)
    migrate(engine)
    spool = Spool(tmp_path, max_bytes=10**6)
    record: dict[str, Any] = {
        "request": {
            "request_id": str(uuid.uuid4()), "received_at": datetime.now(UTC).isoformat(), "key_id": "ops",
            "endpoint": "/invocations", "model_name": "m", "model_version": 1, "model_target": "@production",
            "status_code": 200, "total_ms": 5.0, "upstream_ms": 4.0, "error": None,
        },
        "content_type": "text/csv", "body": "employee_id,Age,OverTime\n1,41,Y\u0000es\n",
        "response": json.dumps({"predictions": [PREDICTION]}),
        "id_column": "employee_id",
    }  # fmt: skip
    good: dict[str, Any] = {
        **record,
        "request": {**record["request"], "request_id": str(uuid.uuid4())},
        "body": "",
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
