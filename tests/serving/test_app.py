"""The proxy's HTTP behaviour in process: the app through ASGI, a fake model server, a SQLite log store."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
from sqlalchemy import text

from logstore.records import to_rows
from serving.proxy.runtime import Runtime
from tests.serving.conftest import API_KEY, ROLE_KEYS, ROUTES, FakeBackend, drive, logged_request, spooled

ROW = {"employee_id": 1, "Age": 41, "OverTime": "Yes"}
GOOD = json.dumps({"dataframe_records": [ROW]}).encode()
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deep_nesting_is_a_logged_400(app_runtime: Runtime, depth: int) -> None:
    body = b"[" * depth + b"]" * depth  # Past 64 KiB, checked in the worker process.
    by_id = b'{"params": ' * 1_000 + b"1" + b"}" * 1_000

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post("/invocations", content=body, headers=JSON),
            await client.post("/predict/by-id/1", content=by_id),
        ]

    answers = drive(app_runtime, scenario)
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json()["message"] == "body: is nested too deeply to be a scoring request"
        request = logged_request(app_runtime, answer.headers["X-Request-ID"])
        assert request["status_code"] == 400 and request["error"] == answer.json()["message"]


def test_error_answers_and_stored_errors_are_bounded(app_runtime: Runtime) -> None:
    wide = {**ROW, **{f"unknown_column_{n}": 1 for n in range(100_000)}}
    long_name = {**ROW, "x" * 5_000_000: 1}

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post("/invocations", json={"dataframe_records": [body]})
            for body in (wide, long_name)
        ] + [await client.post("/invocations", json={"dataframe_records": [ROW], **{"k" * 3_000_000: 1}})]

    answers = drive(app_runtime, scenario)
    for answer in answers:
        assert answer.status_code == 400
        assert len(answer.content) < 1_200, len(answer.content)
        assert len(logged_request(app_runtime, answer.headers["X-Request-ID"])["error"]) <= 1_000
    assert "unknown column(s) ['unknown_column_0'," in answers[0].json()["message"]
    assert "and 99995 more" in answers[0].json()["message"]
    assert "'xxxxxxxxxx" in answers[1].json()["message"]


def test_each_request_has_its_own_row_whatever_id_the_client_sends(
    app_runtime: Runtime, fake_backend: FakeBackend
) -> None:
    claimed = str(uuid.uuid4())
    five = json.dumps({"dataframe_records": [ROW] * 5}).encode()

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        sent = {**JSON, "X-Request-ID": claimed}
        return [
            # A caller without a key sends the id first; the later requests must not land on its row.
            await client.post("/invocations", content=GOOD, headers={**sent, "X-API-Key": ""}),
            await client.post("/invocations", content=GOOD, headers=sent),
            await client.post("/invocations", content=five, headers=sent),
        ]

    unauthenticated, one, many = drive(app_runtime, scenario)
    assert [answer.status_code for answer in (unauthenticated, one, many)] == [401, 200, 200]
    ids = {answer.headers["X-Request-ID"] for answer in (unauthenticated, one, many)}
    assert len(ids) == 3 and claimed not in ids
    assert all(answer.headers["X-Client-Request-ID"] == claimed for answer in (unauthenticated, one, many))
    for answer, status, rows in ((unauthenticated, 401, 0), (one, 200, 1), (many, 200, 5)):
        request = logged_request(app_runtime, answer.headers["X-Request-ID"])
        assert (request["status_code"], request["n_rows"], len(request["predictions"])) == (
            status,
            rows,
            rows,
        )
        assert str(request["client_request_id"]) == claimed
        assert request["key_id"] == (None if status == 401 else "ops")


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/csv", b"employee_id,Age,OverTime\n1,41,Y\x00es\n"),
        ("application/vnd.apache.parquet", _parquet(pd.DataFrame([{**ROW, "OverTime": "Y\x00es"}]))),
    ],
    ids=["csv", "parquet"],
)
def test_csv_and_parquet_with_a_nul_are_refused_like_json(
    app_runtime: Runtime, fake_backend: FakeBackend, content_type: str, body: bytes
) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/invocations", content=body, headers={"Content-Type": content_type})

    answer = drive(app_runtime, scenario)
    assert answer.status_code == 400 and "NUL character" in answer.json()["message"], answer.text
    assert logged_request(app_runtime, answer.headers["X-Request-ID"])["status_code"] == 400
    assert fake_backend.bodies == []  # Refused before the model saw it.


def test_clean_csv_and_parquet_are_forwarded(app_runtime: Runtime, fake_backend: FakeBackend) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post("/invocations", content=body, headers={"Content-Type": kind})
            for kind, body in (
                ("text/csv", b"employee_id,Age,OverTime\n1,41,Yes\n"),
                ("application/vnd.apache.parquet", _parquet(pd.DataFrame([ROW]))),
            )
        ]

    assert [answer.status_code for answer in drive(app_runtime, scenario)] == [200, 200]
    assert len(fake_backend.bodies) == 2


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
def test_json_in_another_unicode_encoding_is_logged_with_its_input(
    app_runtime: Runtime, encoding: str
) -> None:
    body = json.dumps({"dataframe_records": [ROW]}).encode(encoding)

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/invocations", content=body, headers=JSON)

    answer = drive(app_runtime, scenario)
    assert answer.status_code == 200, answer.text
    [prediction] = logged_request(app_runtime, answer.headers["X-Request-ID"])["predictions"]
    assert prediction["input"] == ROW


def test_a_spool_that_cannot_be_written_answers_503_and_says_so(
    app_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    app_runtime.spool.append({"warm": True})  # Opens a segment; then the disk is full.
    app_runtime.spool._current = Path("/dev/full").open("ab")  # noqa: SIM115

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/invocations", content=GOOD, headers=JSON)

    with caplog.at_level(logging.ERROR):
        answer = drive(app_runtime, scenario)
    assert answer.status_code == 503, answer.text
    assert "spool cannot be written" in answer.json()["message"]
    assert answer.headers["X-Request-ID"] in caplog.text and "could not be spooled" in caplog.text


def test_the_writer_is_restarted_after_a_crash_and_ready_says_so_meanwhile(app_runtime: Runtime) -> None:
    app_runtime.writer._interval = 0.05
    app_runtime.spool.append({"warm": True})
    app_runtime.spool.seal()
    trap = app_runtime.spool.directory / "9999999999999999.jsonl"
    trap.mkdir()  # A segment the writer cannot read: a real OSError in its thread.

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, str, httpx.Response, str]:
        app_runtime.writer.start()
        for _ in range(100):
            if app_runtime.writer.crashed:
                break
            await asyncio.sleep(0.05)
        down, metrics_down = await client.get("/ready"), (await client.get("/metrics")).text
        trap.rmdir()
        for _ in range(100):
            if app_runtime.writer.running:
                break
            await asyncio.sleep(0.1)
        return down, metrics_down, await client.get("/ready"), (await client.get("/metrics")).text

    down, metrics_down, up, metrics_up = drive(app_runtime, scenario)
    assert down.status_code == 503
    assert any("log writer: down (IsADirectoryError" in reason for reason in down.json()["reasons"])
    assert "serving_log_writer_restarts_total 1.0" in metrics_down
    assert "serving_log_writer_restarts_total 0.0" not in metrics_up
    assert up.json()["reasons"] == [], up.text
    assert up.status_code == 200


def test_ping_health_and_version_answer_as_mlflow_models_serve(app_runtime: Runtime) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        answers = [
            await client.get(path, headers={"X-API-Key": ""}) for path in ("/ping", "/health", "/version")
        ]
        app_runtime.backend, backend = None, app_runtime.backend
        answers.append(await client.get("/ping"))
        app_runtime.backend = backend
        return answers

    ping, health, version, down = drive(app_runtime, scenario)
    for answer in (ping, health):
        assert (answer.status_code, answer.content, answer.headers["content-type"]) == (
            200, b"\n", "application/json",
        )  # fmt: skip
    assert (version.status_code, version.text) == (200, mlflow.__version__)
    assert down.status_code == 503


def test_spooled_records_carry_the_client_id_and_decode_to_rows(app_runtime: Runtime) -> None:
    claimed = str(uuid.uuid4())

    async def scenario(client: httpx.AsyncClient) -> list[dict[str, object]]:
        await client.post("/invocations", content=GOOD, headers={**JSON, "X-Request-ID": claimed})
        return spooled(app_runtime)

    [record] = drive(app_runtime, scenario)
    request, predictions = to_rows(record, hmac_key=None)
    assert str(request["client_request_id"]) == claimed and request["request_id"] != uuid.UUID(claimed)
    assert [row["input"] for row in predictions] == [ROW]


def test_a_model_version_past_the_column_is_a_400_not_a_500(app_runtime: Runtime) -> None:
    # Found by the in-process fuzz test: SQLite (the laptop default) cannot compare such an integer.
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/predictions", params={"model_version": 2**63})

    answer = drive(app_runtime, scenario)
    assert answer.status_code == 400 and "model_version" in answer.json()["message"], answer.text


def test_every_answer_forbids_sniffing_and_only_pages_carry_the_page_policy(app_runtime: Runtime) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        body = json.dumps({"dataframe_split": {"columns": ["employee_id"], "data": [[1]]}})
        return [
            await client.post("/invocations", content=body, headers={"Content-Type": "application/json"}),
            await client.post("/invocations", content="{", headers={"Content-Type": "application/json"}),
            *[
                await client.get(path)
                for path in ("/ping", "/version", "/ready", "/metrics", "/model", "/docs")
            ],
            await client.get("/predictions/00000000-0000-4000-8000-000000000000"),
            await client.get("/nowhere"),
            await client.get("/model", headers={"X-API-Key": "wrong"}),
        ]

    answers = drive(app_runtime, scenario)
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url
        page = answer.headers.get("content-type", "").startswith("text/html")
        assert ("content-security-policy" in answer.headers) == page, answer.request.url
        assert ("x-frame-options" in answer.headers) == page, answer.request.url
    assert {answer.status_code for answer in answers} >= {200, 400, 401, 404}


@pytest.mark.parametrize("role", ["app", "ui", "audit", "ops"])
def test_each_key_reaches_exactly_the_routes_of_its_scopes(
    app_runtime: Runtime, role: str, caplog: pytest.LogCaptureFixture
) -> None:
    scopes = {key.key_id: key.scopes for key in app_runtime.keys}[role]
    secret = ROLE_KEYS.get(role, API_KEY)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.request(method, path, json=body, headers={"X-API-Key": secret})
            for method, path, body, _ in ROUTES
        ]

    answers = drive(app_runtime, scenario)
    for (method, path, _, scope), answer in zip(ROUTES, answers, strict=True):
        refused = scope is not None and scope not in scopes
        assert (answer.status_code == 403) == refused, (method, path, answer.status_code, answer.text)
        if refused:
            assert answer.json() == {
                "error_code": "PERMISSION_DENIED",
                "message": f"key {role!r} lacks the {scope!r} scope this endpoint needs",
            }
            assert f"key {role!r} refused {method} {path}: it lacks the {scope!r} scope" in caplog.text
    with app_runtime.engine.connect() as connection:  # Both scoring requests are logged with the key's id.
        logged = connection.execute(text("SELECT key_id, status_code FROM inference_requests")).all()
    assert len(logged) == 2 and {key_id for key_id, _ in logged} == {role}
    assert ({status for _, status in logged} == {403}) == ("score" not in scopes)
