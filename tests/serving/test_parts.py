"""Unit tests of the serving parts that need no server: errors, keys, settings, the runtime's log policy."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from logstore.spool import Spool
from serving.errors import BackendTimeout, ConfigurationError, Forbidden, Unauthenticated, Unavailable
from serving.proxy import backend as backends
from serving.proxy.auth import SCOPES, identify, parse_keys, permit
from serving.proxy.metrics import Metrics
from serving.proxy.upstream import clean_message, translate
from serving.registry import resolve
from serving.settings import ServingSettings
from tests.serving.conftest import free_port, make_runtime, model_info


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
    found = [identify(keys, "0123456789abcdef"), identify(keys, "fedcba9876543210")]
    assert [key.key_id for key in found if key is not None] == ["ops", "next"]
    assert identify([], None) is None
    for presented in (None, "", "0123456789abcdeX"):
        with pytest.raises(Unauthenticated):
            identify(keys, presented)
    for bare in ("fedcba9876543210", ":fedcba9876543210"):  # Never an id derived from the secret alone.
        with pytest.raises(ConfigurationError, match="entry 2 has no id; write it as key_id:secret"):
            parse_keys(["ops:0123456789abcdef", bare])
    with pytest.raises(ConfigurationError, match="shorter than 16"):
        parse_keys(["ops:short"])
    with pytest.raises(ConfigurationError, match="shorter than 16"):
        parse_keys(["ops:short:read"])


def test_a_key_reaches_only_its_scopes_and_one_without_scopes_all_of_them_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = parse_keys(["app:0123456789abcdef:score", "audit:fedcba9876543210:read+feedback",
                       "colon:ab:cd:ef:0123456789:score+read"])  # fmt: skip
    assert [sorted(key.scopes) for key in keys] == [["score"], ["feedback", "read"], ["read", "score"]]
    assert keys[2].secret == b"ab:cd:ef:0123456789"  # A colon in a secret: the scopes follow the last one.
    assert not caplog.records
    app, audit = keys[0], keys[1]
    assert permit(app, "score", "POST /invocations") == "app" and permit(None, "read", "GET /model") is None
    with pytest.raises(Forbidden, match="key 'app' lacks the 'read' scope") as refused:
        permit(app, "read", "GET /predictions")
    assert refused.value.status_code == 403 and refused.value.key_id == "app"
    assert "key 'app' refused GET /predictions: it lacks the 'read' scope" in caplog.text
    with pytest.raises(Forbidden, match="'score' scope"):
        permit(audit, "score", "POST /invocations")
    [legacy] = parse_keys(["old:0123456789abcdef"])
    assert legacy.scopes == frozenset(SCOPES) and not legacy.scoped
    assert "key 'old' has no scopes and may do everything" in caplog.text
    with pytest.raises(ConfigurationError, match=r"key 'x' names unknown scope\(s\) 'admin'"):
        parse_keys(["x:0123456789abcdef:read+admin"])
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


ROWS = [{"employee_id": 1, "Age": 41, "OverTime": "Yes"}, {"employee_id": 2, "Age": 49, "OverTime": "No"}]


def test_drop_policy_keeps_serving_and_counts_what_it_dropped(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, spool_full="drop", spool_max_bytes=1500)
    body = json.dumps({"dataframe_records": ROWS}).encode()
    for _ in range(5):
        runtime.log(
            request_id=str(uuid.uuid4()), client_request_id=None, received_at=datetime.now(UTC), key_id=None,
            endpoint="/invocations",
            backend=None, status_code=200, total_ms=1.0, call=None, content_type="application/json",
            body=body, response=None, error=None,
        )  # fmt: skip
    assert runtime.dropped_records > 0
    assert runtime.spool.size <= 1500
    asyncio.run(runtime.close())


def test_drop_policy_drops_a_record_the_disk_refuses_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime(tmp_path, spool_full="drop")
    runtime.spool.append({"warm": True})  # Opens a segment; then the disk is full.
    runtime.spool._current = Path("/dev/full").open("ab")  # noqa: SIM115
    runtime.log(
        request_id=str(uuid.uuid4()), client_request_id=None, received_at=datetime.now(UTC), key_id=None,
        endpoint="/invocations", backend=None, status_code=200, total_ms=1.0, call=None,
        content_type="application/json", body=b"{}", response=None, error=None,
    )  # fmt: skip
    assert runtime.dropped_records == 1
    assert "serving_log_records_dropped_total 1.0" in runtime.metrics.exposition().decode()
    assert "spool cannot be written" in caplog.text and "SERVING_SPOOL_FULL=drop" in caplog.text
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
    runtime = make_runtime(tmp_path, log_requests=False, spool_max_bytes=10)
    for _ in range(3):
        runtime.log(
            request_id=str(uuid.uuid4()), client_request_id=None, received_at=datetime.now(UTC), key_id=None,
            endpoint="/invocations",
            backend=None, status_code=200, total_ms=1.0, call=None, content_type="application/json",
            body=json.dumps({"dataframe_records": ROWS}).encode(), response=None, error=None,
        )  # fmt: skip
    assert runtime.spool.size == 0 and runtime.dropped_records == 0
    asyncio.run(runtime.close())


def test_backend_timeout_and_connection_errors_become_504_and_503(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, backend_timeout_seconds=0.5)
    held: list[asyncio.StreamWriter] = []

    async def scenario() -> None:
        # A backend that accepts the connection and never answers, and a port nobody listens on.
        silent = await asyncio.start_server(lambda _r, w: held.append(w), "127.0.0.1", 0)
        silent_port = silent.sockets[0].getsockname()[1]
        for port, error in ((silent_port, BackendTimeout), (free_port(), Unavailable)):
            backend = backends.Backend(info=model_info(), url=f"http://127.0.0.1:{port}", process=None)  # type: ignore[arg-type]
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


def test_resolve_follows_an_alias_or_a_stage(client: MlflowClient, production: str) -> None:
    assert resolve(client, "attrition", alias="production", stage=None) == int(production)
    assert resolve(client, "attrition", alias=None, stage="Production") == int(production)
    with pytest.raises(ConfigurationError, match="no-such-alias"):
        resolve(client, "attrition", alias="no-such-alias", stage=None)
