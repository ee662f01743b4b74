"""The proxy against a real `mlflow models serve` and a real PostgreSQL log store: one server per module."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine, text

from bench.logfill import served_json as as_served
from bench.servers import backend_url as backend_url_of
from registry_scripts.__main__ import main as registry_main
from serving.entities import main as load_entities
from tests.conftest import REPO, register_again
from tests.serving.conftest import (
    API_KEY,
    HEADERS,
    ROLE_KEYS,
    ROTATED_KEY,
    ROUTES,
    Proxy,
    count,
    logged,
    rows,
    split_body,
    wait_for,
)
from training.job import TrainingOutcome

HMAC_KEY = "pseudonym-key-for-tests"
JSON_TYPE = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def proxy(served: str, log_db: str, start_proxy: Callable[..., Proxy]) -> Proxy:
    """One proxy for the module; entity ids are pseudonymised; bodies over 50 kB are refused."""
    return start_proxy(served, log_db, ENTITY_ID_HMAC_KEY=HMAC_KEY, SERVING_MAX_BODY_BYTES="50000")


@pytest.fixture(scope="module")
def http(proxy: Proxy) -> httpx.Client:
    """A client on the proxy with the API key."""
    return httpx.Client(base_url=proxy.url, headers=HEADERS, timeout=30)


@pytest.fixture(scope="module")
def backend_url(proxy: Proxy) -> str:
    """The bare `mlflow models serve` behind the proxy."""
    return backend_url_of(proxy)


def test_ping_health_and_version_answer_byte_for_byte_as_the_backend(proxy: Proxy, backend_url: str) -> None:
    for path in ("/ping", "/health", "/version"):
        ours, theirs = httpx.get(f"{proxy.url}{path}"), httpx.get(f"{backend_url}{path}")
        assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content) == (
            200, theirs.content,
        )  # fmt: skip
        assert ours.headers["content-type"] == theirs.headers["content-type"]
    client = ScoringServerClient("127.0.0.1", proxy.port)  # MLflow's own client of `mlflow models serve`.
    client.wait_server_ready(timeout=10)
    assert client.get_version() == mlflow.__version__


def test_health_and_ready_need_no_key(proxy: Proxy) -> None:
    assert httpx.get(f"{proxy.url}/health").status_code == 200
    ready = httpx.get(f"{proxy.url}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model_version": 1, "reasons": []}


def test_model_reports_version_schema_and_metrics(http: httpx.Client, served: str) -> None:
    info = http.get("/model").json()
    assert info["name"] == served
    assert info["version"] == 1
    assert info["served_as"] == f"models:/{served}@production"
    assert info["stage"] == "Production"
    assert info["aliases"] == ["production"]
    assert 0 < info["threshold"] < 1
    assert 0.5 < info["metrics"]["holdout_roc_auc"] <= 1
    assert info["id_column"] == "employee_id"
    names = [column["name"] for column in info["input_schema"]]
    assert "OverTime" in names and "employee_id" in names
    assert {param["name"] for param in info["params"]} == {"threshold", "explain", "top_k", "reasons"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(split_body(rows(3)), id="dataframe_split"),
        pytest.param({"dataframe_records": rows(3).to_dict(orient="records")}, id="dataframe_records"),
        pytest.param({"instances": rows(3).to_dict(orient="records")}, id="instances"),
        pytest.param({"inputs": rows(3).to_dict(orient="list")}, id="inputs"),
        pytest.param(split_body(rows(3), top_k=2, threshold=0.5), id="params"),
    ],
)
def test_invocations_answers_like_the_bare_scoring_server(
    http: httpx.Client, backend_url: str, body: dict[str, Any]
) -> None:
    through_proxy = http.post("/invocations", json=body)
    direct = httpx.post(f"{backend_url}/invocations", json=body, timeout=30)
    assert through_proxy.status_code == direct.status_code == 200
    assert through_proxy.json() == direct.json()
    assert through_proxy.headers["X-Model-Version"] == "1"
    uuid.UUID(through_proxy.headers["X-Request-ID"])
    assert len(through_proxy.json()["predictions"]) == 3


def test_the_backend_answers_the_in_process_frame_byte_for_byte(backend_url: str, served: str) -> None:
    frame = rows(5)
    frame.loc[2, "OverTime"] = "Sometimes"  # Unseen.
    answer = httpx.post(f"{backend_url}/invocations", json=split_body(frame, top_k=4), timeout=30)
    expected = mlflow.pyfunc.load_model(f"models:/{served}/1").predict(frame, params={"top_k": 4})
    assert isinstance(expected, pd.DataFrame)
    assert answer.status_code == 200
    assert answer.text == as_served(expected)


def test_csv_is_forwarded_too(http: httpx.Client) -> None:
    answer = http.post(
        "/invocations", content=rows(2).to_csv(index=False), headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 200
    assert [row["employee_id"] for row in answer.json()["predictions"]] == [1, 2]


def test_the_backend_prints_no_line_per_request(http: httpx.Client, proxy: Proxy) -> None:
    assert http.post("/invocations", json=split_body(rows(1))).status_code == 200
    log = proxy.log()
    assert "Uvicorn running on" in log  # The backend's own output does reach this log.
    assert "POST /invocations" not in log


def test_rows_are_persisted_with_their_content(http: httpx.Client, log_engine: Engine) -> None:
    client_id = str(uuid.uuid4())
    frame = rows(2, start=10)
    answer = http.post("/invocations", json=split_body(frame, top_k=3), headers={"X-Request-ID": client_id})
    assert answer.status_code == 200
    request_id = answer.headers["X-Request-ID"]  # Our own; the client's is kept beside it.
    assert request_id != client_id and answer.headers["X-Client-Request-ID"] == client_id
    request = logged(log_engine, request_id)
    assert str(request["client_request_id"]) == client_id
    assert request["input_error"] is None
    assert request["status_code"] == 200
    assert request["key_id"] == "ops"
    assert request["endpoint"] == "/invocations"
    assert request["model_version"] == 1
    assert request["model_target"] == "@production"
    assert request["n_rows"] == 2
    assert request["total_ms"] >= request["upstream_ms"] > 0
    assert request["error"] is None
    with log_engine.connect() as connection:
        stored = connection.execute(
            text(
                "SELECT row_index, entity_id, input, score, prediction, threshold, base_value,"
                " contributions, json_typeof(contributions) AS kind FROM inference_predictions"
                " WHERE request_id = :rid ORDER BY row_index"
            ),
            {"rid": request_id},
        ).all()
    predictions = answer.json()["predictions"]
    assert len(stored) == 2
    for row, prediction, (_, raw) in zip(stored, predictions, frame.iterrows(), strict=True):
        pseudonym = hmac.new(HMAC_KEY.encode(), str(raw["employee_id"]).encode(), hashlib.sha256).hexdigest()
        assert row.entity_id == pseudonym
        assert row.input["employee_id"] == pseudonym
        assert row.input["OverTime"] == raw["OverTime"]
        assert row.input["MonthlyIncome"] == raw["MonthlyIncome"]
        assert row.score == pytest.approx(prediction["score"])
        assert row.prediction == prediction["prediction"]
        assert row.threshold == pytest.approx(prediction["threshold"])
        assert row.base_value == pytest.approx(prediction["base_value"])
        assert row.kind == "object"
        assert row.contributions == pytest.approx(prediction["contributions"])


def test_client_request_id_must_be_a_uuid(http: httpx.Client) -> None:
    answer = http.post("/invocations", json=split_body(rows(1)), headers={"X-Request-ID": "not-a-uuid"})
    assert answer.status_code == 400
    assert answer.json() == {"error_code": "BAD_REQUEST", "message": "X-Request-ID: must be a UUID"}


def test_body_over_the_limit_gets_413(http: httpx.Client) -> None:
    answer = http.post("/invocations", json=split_body(rows(400)))
    assert answer.status_code == 413
    assert answer.json()["error_code"] == "PAYLOAD_TOO_LARGE"


def test_unknown_route_gets_a_json_404(http: httpx.Client) -> None:
    answer = http.get("/nowhere")
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"


UNKNOWN = uuid.UUID(int=1)
PROTECTED = [
    ("GET", "/model"),
    ("POST", "/invocations"),
    ("GET", "/predictions"),
    ("GET", f"/predictions/{UNKNOWN}"),
    ("GET", f"/predictions/{UNKNOWN}/waterfall.png"),
    ("POST", "/predict/by-id/1"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_protected_endpoint_wants_a_key_and_takes_either_rotated_one(
    proxy: Proxy, method: str, path: str
) -> None:
    def call(key: str | None) -> httpx.Response:
        headers = {"X-API-Key": key} if key is not None else {}
        return httpx.request(
            method, f"{proxy.url}{path}", json=split_body(rows(1)), headers=headers, timeout=30
        )

    refused = [call(None), call(""), call(API_KEY[:-1] + "X"), call(API_KEY + "X"), call(API_KEY.upper())]
    for answer in refused:
        assert answer.status_code == 401
        assert answer.json() == {
            "error_code": "UNAUTHENTICATED",
            "message": "a valid X-API-Key header is required",
        }
    assert all(API_KEY[:8] not in answer.text for answer in refused)
    for key in (API_KEY, ROTATED_KEY):
        assert call(key).status_code in {200, 400, 404}  # by-id takes no rows in its body: 400.


def test_health_ready_and_the_schema_are_open(proxy: Proxy) -> None:
    for path in ("/health", "/ready", "/openapi.json"):
        assert httpx.get(f"{proxy.url}{path}", timeout=30).status_code == 200


def test_rotated_key_works_and_keys_are_never_stored(
    proxy: Proxy, log_engine: Engine, http: httpx.Client
) -> None:
    answer = httpx.post(
        f"{proxy.url}/invocations", json=split_body(rows(1)), headers={"X-API-Key": ROTATED_KEY}, timeout=30
    )
    assert answer.status_code == 200
    request = logged(log_engine, answer.headers["X-Request-ID"])
    assert request["key_id"] == "next"
    http.post("/invocations", json=split_body(rows(1)), headers={"X-API-Key": ROTATED_KEY + "x"})
    with log_engine.connect() as connection:
        dump = json.dumps(
            [
                [str(value) for value in row]
                for table in ("inference_requests", "inference_predictions", "entities")
                for row in connection.execute(text(f"SELECT * FROM {table}"))
            ]
        )
    assert API_KEY not in dump and ROTATED_KEY not in dump
    assert API_KEY not in proxy.log() and ROTATED_KEY not in proxy.log()


def test_predictions_endpoints_read_the_log(http: httpx.Client, log_engine: Engine) -> None:
    answer = http.post("/invocations", json=split_body(rows(2, start=20)))
    request_id = answer.headers["X-Request-ID"]
    logged(log_engine, request_id)
    latest = http.get("/predictions", params={"limit": 2, "model_version": 1}).json()["predictions"]
    assert [(row["request_id"], row["row_index"]) for row in latest] == [(request_id, 0), (request_id, 1)]
    assert http.get("/predictions", params={"model_version": 99}).json() == {"predictions": []}
    one = http.get(f"/predictions/{request_id}").json()
    assert one["status_code"] == 200
    assert [row["score"] for row in one["predictions"]] == pytest.approx(
        [row["score"] for row in answer.json()["predictions"]]
    )
    assert http.get(f"/predictions/{uuid.uuid4()}").status_code == 404
    bad = http.get("/predictions", params={"limit": 0})
    assert bad.status_code == 400
    assert "limit" in bad.json()["message"]


def test_reason_codes_are_answered_and_logged_with_the_prediction(
    http: httpx.Client, log_engine: Engine
) -> None:
    answer = http.post("/invocations", json=split_body(rows(3, start=40), reasons=4))
    assert answer.status_code == 200, answer.text
    answered = answer.json()["predictions"]
    assert all(1 <= len(row["reasons"]) <= 4 for row in answered)
    assert {"code", "feature", "value", "statement", "contribution"} == set(answered[0]["reasons"][0])
    request_id = answer.headers["X-Request-ID"]
    logged(log_engine, request_id)
    one = http.get(f"/predictions/{request_id}").json()
    assert [row["reasons"] for row in one["predictions"]] == [row["reasons"] for row in answered]
    latest = http.get("/predictions", params={"limit": 3}).json()["predictions"]
    assert [row["reasons"] for row in latest] == [row["reasons"] for row in answered]
    plain = http.post("/invocations", json=split_body(rows(1)))
    assert "reasons" not in plain.json()["predictions"][0]  # Only when asked for.


def test_waterfall_png_of_a_logged_row(http: httpx.Client, log_engine: Engine) -> None:
    answer = http.post("/invocations", json=split_body(rows(2, start=30), top_k=4))
    request_id = answer.headers["X-Request-ID"]
    logged(log_engine, request_id)
    png = http.get(f"/predictions/{request_id}/waterfall.png", params={"row": 1})
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n") and len(png.content) > 5000
    assert http.get(f"/predictions/{request_id}/waterfall.png", params={"row": 5}).status_code == 404
    plain = http.post("/invocations", json=split_body(rows(1), explain=False))
    logged(log_engine, plain.headers["X-Request-ID"])
    missing = http.get(f"/predictions/{plain.headers['X-Request-ID']}/waterfall.png")
    assert missing.status_code == 404
    assert "without explanations" in missing.json()["message"]


def test_predict_by_id_scores_the_stored_entity(
    http: httpx.Client, served: str, log_db: str, log_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", log_db)
    monkeypatch.setenv("ENTITY_ID_HMAC_KEY", HMAC_KEY)
    assert load_entities(["--model", served, "--input", str(REPO / "data" / "attrition.csv")]) == 0
    assert count(log_engine, "SELECT count(*) FROM entities WHERE model_name = :m", m=served) == 1470
    by_id = http.post("/predict/by-id/7", json={"params": {"top_k": 2}})
    assert by_id.status_code == 200
    frame = rows(1470)
    direct = http.post("/invocations", json=split_body(frame[frame["employee_id"] == 7], top_k=2))
    assert by_id.json() == direct.json()
    assert by_id.json()["predictions"][0]["employee_id"] == 7
    request = logged(log_engine, by_id.headers["X-Request-ID"])
    assert request["endpoint"] == "/predict/by-id/{entity_id}"
    unknown = http.post("/predict/by-id/999999")
    assert unknown.status_code == 404
    assert "not in the entity table" in unknown.json()["message"]


def test_entity_loader_names_a_bad_input(
    served: str, tmp_path: Any, log_db: str, monkeypatch: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", log_db)
    bad = tmp_path / "bad.csv"
    rows(3).drop(columns=["OverTime"]).to_csv(bad, index=False)
    assert load_entities(["--model", served, "--input", str(bad)]) == 2
    assert "['OverTime']" in capsys.readouterr().err


def test_csv_with_a_nul_is_refused_and_logged(http: httpx.Client, log_engine: Engine) -> None:
    answer = http.post(
        "/invocations",
        content=rows(1).assign(OverTime="Y\u0000es").to_csv(index=False),
        headers={"Content-Type": "text/csv"},
    )
    assert answer.status_code == 400 and "NUL character" in answer.json()["message"], answer.text
    assert logged(log_engine, answer.headers["X-Request-ID"])["status_code"] == 400


def test_a_csv_too_wide_to_parse_is_logged_without_its_input(http: httpx.Client, log_engine: Engine) -> None:
    wide = pd.concat([rows(2), pd.DataFrame({f"extra_{n}": [n, n] for n in range(1_100)})], axis=1)
    answer = http.post("/invocations", content=wide.to_csv(index=False), headers={"Content-Type": "text/csv"})
    assert answer.status_code == 200, answer.text  # MLflow scores the columns it knows.
    request = logged(log_engine, answer.headers["X-Request-ID"])
    assert request["n_rows"] == 2 and "over 1024" in request["input_error"]
    stored = http.get(f"/predictions/{answer.headers['X-Request-ID']}").json()["predictions"]
    assert [row["input"] for row in stored] == [None, None]
    assert [row["score"] for row in stored] == pytest.approx(
        [p["score"] for p in answer.json()["predictions"]]
    )


def test_with_pseudonyms_on_a_database_dump_holds_no_raw_id(
    http: httpx.Client, served: str, log_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    raw_ids = [7391846205, 8642097531, 5550001234]  # Too long to occur in the dump by chance.
    frame = rows(3).assign(employee_id=raw_ids)
    (tmp_path / "entities.csv").write_text(frame.iloc[[2]].to_csv(index=False))
    monkeypatch.setenv("DATABASE_URL", log_db)
    monkeypatch.setenv("ENTITY_ID_HMAC_KEY", HMAC_KEY)
    assert load_entities(["--model", served, "--input", str(tmp_path / "entities.csv")]) == 0
    answers = [
        http.post("/invocations", json=split_body(frame.iloc[:2])),
        http.post(f"/predict/by-id/{raw_ids[2]}", json={"params": {"top_k": 1}}),
        http.post("/predict/by-id/4440001234"),  # Unknown: a 404 that must not log the id either.
        http.post("/invocations", json=split_body(frame.iloc[:1].assign(Age="x"))),  # A 400.
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 404, 400]
    assert answers[1].json()["predictions"][0]["employee_id"] == raw_ids[2]  # The caller gets its id back.
    pseudonyms = [hmac.new(HMAC_KEY.encode(), str(i).encode(), hashlib.sha256).hexdigest() for i in raw_ids]

    def dump() -> str:
        return subprocess.run(
            ["pg_dump", "--data-only", log_db], capture_output=True, text=True, check=True
        ).stdout

    wait_for(lambda: all(p in dump() for p in pseudonyms), message="the pseudonymised rows in the database")
    text_dump = dump()
    assert not [raw for raw in [*map(str, raw_ids), "4440001234"] if raw in text_dump]


def test_mlflow_s_own_scoring_client_works_against_the_proxy(
    served: str, log_db: str, start_proxy: Callable[..., Proxy], backend_url: str
) -> None:
    open_proxy = start_proxy(served, log_db, API_KEYS="")  # MLflow's client sends no key.
    frame = rows(3)
    through = ScoringServerClient("127.0.0.1", open_proxy.port)
    through.wait_server_ready(timeout=30)
    port = int(backend_url.rsplit(":", 1)[1])
    direct = ScoringServerClient("127.0.0.1", port).invoke(frame, params={"top_k": 2})
    assert through.invoke(frame, params={"top_k": 2}) == direct
    assert through.get_version() == mlflow.__version__
    open_proxy.stop()


def _metric(proxy: Proxy, name: str) -> float:
    text = httpx.get(f"{proxy.url}/metrics", headers=HEADERS).text
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(f"{name} ")))


# The Content-Types MLflow's scoring server tells apart: the first four it reads as JSON, the rest it refuses.
CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-8", "application/json; charset=UTF-8",
    "application/json;charset=utf-8", "Application/JSON", "application/json; charset=utf8",
    'application/json; charset="utf-8"', "application/json;", "application/json; format=pandas-records",
]  # fmt: skip


def test_each_content_type_gets_the_same_answer_alone_and_while_others_wait(
    http: httpx.Client, proxy: Proxy
) -> None:
    """A request MLflow refuses alone is refused while others wait too, never merged into their call."""
    body = json.dumps(split_body(rows(2, start=50))).encode()
    alone = [
        http.post("/invocations", content=body, headers={"Content-Type": kind}) for kind in CONTENT_TYPES
    ]
    assert [answer.status_code for answer in alone] == [200] * 4 + [415] * 5, [a.text for a in alone]
    # Keeps the call slot busy meanwhile; reason codes make its call longer than the model alone (which got
    # faster when it lost three inputs) and keep it under the proxy's 50,000-byte limit.
    slow = json.dumps(split_body(rows(150, start=300), reasons=4, top_k=0)).encode()

    def post(client: httpx.Client, content_type: str, content: bytes = body) -> httpx.Response:
        return client.post("/invocations", content=content, headers={"Content-Type": content_type})

    with ExitStack() as stack, ThreadPoolExecutor(max_workers=len(CONTENT_TYPES) + 1) as pool:
        # One open connection per sender, so that the waiting ones arrive while the slot-holder's call runs.
        clients = [
            stack.enter_context(httpx.Client(base_url=proxy.url, headers=HEADERS, timeout=60))
            for _ in range(len(CONTENT_TYPES) + 1)
        ]
        for client in clients:
            post(client, "application/json")
        calls, requests = (
            _metric(proxy, "serving_batch_requests_count"),
            _metric(proxy, "serving_batch_requests_sum"),
        )
        # On a loaded machine a round can miss its overlap: rounds go on until one merges (20 at most).
        for _ in range(20):
            first = pool.submit(post, clients[-1], "application/json", slow)
            time.sleep(0.01)
            waited = list(pool.map(post, clients[:-1], CONTENT_TYPES))
            assert first.result().status_code == 200
            for kind, single, answer in zip(CONTENT_TYPES, alone, waited, strict=True):
                assert (answer.status_code, answer.content) == (single.status_code, single.content), kind
            merged_calls = _metric(proxy, "serving_batch_requests_count") - calls
            merged_requests = _metric(proxy, "serving_batch_requests_sum") - requests
            if merged_calls < merged_requests:
                break
    assert merged_calls < merged_requests  # The accepted ones shared a call.


def test_concurrent_requests_get_the_bytes_they_get_alone(
    http: httpx.Client, proxy: Proxy, log_engine: Engine
) -> None:
    """Natural batching against the real model server: merged or not, every answer is the same bytes."""
    frame = rows(40, start=100)
    missing: dict[str, Any] = split_body(rows(1, start=7))
    split = missing["dataframe_split"]
    split["data"][0][split["columns"].index("Department")] = None  # Merged with rows that have one.
    reordered = frame.iloc[5:7][list(reversed(frame.columns))]
    bodies = [
        json.dumps(
            split_body(frame.iloc[n : n + 1 + n % 3], **({"top_k": 1 + n % 2} if n % 4 else {}))
        ).encode()
        for n in range(12)
    ] + [
        json.dumps({"dataframe_records": frame.iloc[20:23].to_dict(orient="records")}).encode(),
        json.dumps(
            {"dataframe_records": frame.iloc[23:24].to_dict(orient="records"), "params": {"top_k": 2}}
        ).encode(),
        json.dumps(split_body(reordered)).encode(),
        json.dumps(missing).encode(),
    ]
    slow = json.dumps(split_body(rows(150, start=300))).encode()  # Under 64 KiB: keeps the call slot busy.
    assert len(slow) < 64 * 1024
    alone = [http.post("/invocations", content=body, headers=JSON_TYPE) for body in bodies]
    assert all(answer.status_code == 200 for answer in alone), [a.text for a in alone if a.status_code != 200]
    calls, requests = (
        _metric(proxy, "serving_batch_requests_count"),
        _metric(proxy, "serving_batch_requests_sum"),
    )

    def post(body: bytes) -> httpx.Response:
        with httpx.Client(base_url=proxy.url, headers=HEADERS, timeout=60) as client:
            return client.post("/invocations", content=body, headers=JSON_TYPE)

    together: list[httpx.Response] = []
    with ThreadPoolExecutor(max_workers=len(bodies) + 1) as pool:
        for _ in range(3):
            first = pool.submit(post, slow)
            time.sleep(0.01)
            together.extend(pool.map(post, bodies))
            assert first.result().status_code == 200
    merged_calls = _metric(proxy, "serving_batch_requests_count") - calls
    merged_requests = _metric(proxy, "serving_batch_requests_sum") - requests
    assert merged_requests == 3 * (len(bodies) + 1) and merged_calls < merged_requests  # Some calls merged.
    for n, answer in enumerate(together):
        single = alone[n % len(bodies)]
        assert answer.status_code == 200, answer.text
        assert answer.content == single.content, f"body {n % len(bodies)}"
        assert answer.headers["X-Model-Version"] == single.headers["X-Model-Version"]
    ids = [answer.headers["X-Request-ID"] for answer in together]
    assert len(set(ids)) == len(ids)
    found = [logged(log_engine, request_id) for request_id in ids]
    expected_rows = [len(json.loads(alone[n % len(bodies)].content)["predictions"]) for n in range(len(ids))]
    assert [row["n_rows"] for row in found] == expected_rows
    assert any(row["batch_requests"] > 1 for row in found)
    assert all(row["batch_rows"] >= row["n_rows"] for row in found)


@pytest.mark.parametrize("role", ["app", "ui", "audit"])
def test_a_key_reaches_only_the_routes_of_its_scopes_and_a_refused_score_is_logged(
    proxy: Proxy, log_engine: Engine, role: str
) -> None:
    scopes = {"app": {"score"}, "ui": {"score", "read"}, "audit": {"read", "feedback"}}[role]
    real = {"/invocations": split_body(rows(1, start=3))}  # The model's own columns.
    with httpx.Client(base_url=proxy.url, headers={"X-API-Key": ROLE_KEYS[role]}, timeout=60) as client:
        for method, path, body, scope in ROUTES:
            answer = client.request(method, path, json=real.get(path, body))
            refused = scope is not None and scope not in scopes
            assert (answer.status_code == 403) == refused, (role, method, path, answer.text)
            if refused:
                assert answer.json()["error_code"] == "PERMISSION_DENIED" and repr(scope) in answer.text
            if path == "/invocations":
                stored = logged(log_engine, answer.headers["X-Request-ID"])
                assert (stored["key_id"], stored["status_code"]) == (role, answer.status_code)
    log = proxy.log_path.read_text() if proxy.log_path.exists() else ""
    for method, path, _, scope in ROUTES:
        if scope is not None and scope not in scopes:
            assert f"key {role!r} refused {method} {path}: it lacks the {scope!r} scope" in log, path


def test_a_version_copied_to_another_model_is_served_from_that_model(
    client: MlflowClient, attrition: TrainingOutcome, log_db: str, start_proxy: Callable[..., Proxy]
) -> None:
    """MLflow's "Promote model" copy, promoted on its new model by the scripts, is what the proxy serves."""
    source = f"copied-{uuid.uuid4().hex[:8]}"
    version = register_again(client, attrition, source)
    target = f"{source}-prod"
    copied = str(client.copy_model_version(f"models:/{source}/{version}", target).version)
    assert registry_main(["promote", "--model", target, "--version", copied, "--to", "production"]) == 0
    served = start_proxy(target, log_db)
    answer = httpx.post(f"{served.url}/invocations", json=split_body(rows(2)), headers=HEADERS, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model-Version"] == copied and len(answer.json()["predictions"]) == 2
    served.stop()
