"""Bad input against the real proxy: each case a 4xx naming the problem, no trace, no wrong log row."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.serving.conftest import API_KEY, HEADERS, Proxy, count, logged, rows, split_body, wait_for

ROW: dict[str, Any] = rows(1).to_dict(orient="records")[0]


def records(**changes: Any) -> bytes:
    """One attrition row as `dataframe_records`, with some values changed (None drops the column)."""
    row = {key: value for key, value in {**ROW, **changes}.items() if value is not None or key not in changes}
    return json.dumps({"dataframe_records": [row]}).encode()


def with_params(**params: Any) -> bytes:
    """One good row with the given params."""
    return json.dumps({"dataframe_records": [ROW], "params": params}).encode()


def batch(count: int, *, at: int, orient: str = "split", **changes: Any) -> bytes:
    """`count` attrition rows, row `at` with some values changed: a problem deep in a large batch."""
    frame = rows(count).astype(object)
    for column, value in changes.items():
        frame.at[at, column] = value
    if orient == "split":
        return json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}).encode()
    return json.dumps({"dataframe_records": frame.to_dict(orient="records")}).encode()


GOOD = records()
JSON = "application/json"
CASES = [
    # (id, body, content type, status, words the message must hold)
    ("not-json", b"{dataframe_split:", JSON, 400, "body: is not valid JSON"),
    ("empty-body", b"", JSON, 400, "body: is empty"),
    ("json-scalar", b"42", JSON, 400, "must be a JSON object"),
    ("json-string", b'"rows"', JSON, 400, "not a string"),
    ("json-list", b"[1, 2]", JSON, 400, "not a list"),
    ("unknown-top-key", json.dumps({"dataframe_records": [ROW], "rows": 1}).encode(), JSON, 400,
     "unknown key(s) ['rows']"),
    ("two-formats", json.dumps({"dataframe_records": [ROW], "instances": [ROW]}).encode(), JSON, 400,
     "exactly one of"),
    ("split-ragged", json.dumps({"dataframe_split": {"columns": ["Age"], "data": [[1, 2]]}}).encode(), JSON,
     400, "dataframe_split.data[0]: must be a list of 1 values"),
    ("missing-column", records(JobLevel=None), JSON, 400, "row 0: missing column(s) ['JobLevel']"),
    ("extra-column", records(Salary=100), JSON, 400, "row 0: unknown column(s) ['Salary']"),
    ("target-column-sent", records(Attrition="Yes"), JSON, 400, "unknown column(s) ['Attrition']"),
    ("string-for-number", records(JobLevel="forty"), JSON, 400,
     "row 0, column 'JobLevel': must be an integer, not a string"),
    ("decimal-for-integer", records(JobLevel=41.5), JSON, 400,
     "column 'JobLevel': must be an integer, not a decimal"),
    ("number-for-category", records(OverTime=1), JSON, 400,
     "column 'OverTime': must be a string, not an integer"),
    ("boolean-for-category", records(OverTime=True), JSON, 400, "column 'OverTime': must be a string"),
    ("list-for-number", records(JobLevel=[41]), JSON, 400,
     "column 'JobLevel': must be an integer, not a list"),
    ("integer-past-long", records(MonthlyIncome=2**63), JSON, 400, "column 'MonthlyIncome': is outside"),
    ("integer-far-past-long", records(MonthlyIncome=10**30), JSON, 400, "is outside the long range"),
    ("last-of-300-rows", batch(300, at=299, JobLevel="x"), JSON, 400,
     "row 299, column 'JobLevel': must be an integer, not a string"),
    ("middle-of-300-records", batch(300, at=150, orient="records", OverTime=1), JSON, 400,
     "row 150, column 'OverTime': must be a string, not an integer"),
    ("records-of-two-shapes", json.dumps({"dataframe_records": [
        {k: v for k, v in ROW.items() if k != "employee_id"}, {**ROW, "JobLevel": "x"}]}).encode(), JSON, 400,
     "row 1, column 'JobLevel': must be an integer, not a string"),
    ("null-in-300-rows", batch(300, at=7, JobLevel=None), JSON, 400, "row 7, column 'JobLevel': is null"),
    ("nan", GOOD.replace(b'"JobLevel": 2', b'"JobLevel": NaN'), JSON, 400, "NaN is not JSON"),
    ("infinity", GOOD.replace(b'"JobLevel": 2', b'"JobLevel": -Infinity'), JSON, 400,
     "-Infinity is not JSON"),
    ("null-integer", GOOD.replace(b'"JobLevel": 2', b'"JobLevel": null'), JSON, 400,
     "column 'JobLevel': is null; send an integer"),
    ("null-optional-id", GOOD.replace(b'"employee_id": 1,', b'"employee_id": null,'), JSON, 400,
     "column 'employee_id': is null; leave the column out or send an integer"),
    ("nul-in-string", records(Department="Sales\u0000"), JSON, 400, "contains a NUL character"),
    ("no-rows", json.dumps({"dataframe_records": []}).encode(), JSON, 400, "dataframe_records: holds no"),
    ("rows-not-objects", json.dumps({"dataframe_records": [[1, 2]]}).encode(), JSON, 400,
     "dataframe_records[0]: must be an object"),
    ("ten-megabytes", b"[" + b"1," * (5 * 2**20) + b"1]", JSON, 400, "not a list"),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, JSON, 400, "body: is nested too deeply"),
    ("deep-nesting-1000", b'{"params": ' * 1_000 + b"1" + b"}" * 1_000, JSON, 400, "nested too deeply"),
    ("nul-in-csv", rows(1).assign(OverTime="Y\u0000es").to_csv(index=False).encode(), "text/csv", 400,
     "contains a NUL character"),
    ("text-plain", GOOD, "text/plain", 415, "Content-Type: text/plain is not accepted"),
    ("form", GOOD, "application/x-www-form-urlencoded", 415, "is not accepted"),
    ("latin-1", GOOD, "application/json; charset=latin-1", 415, "charset latin-1 is not accepted"),
    ("not-utf-8", GOOD.replace(b"Sales", b"S\xe4les"), JSON, 400, "body: is not UTF-8"),
    ("param-wrong-type", with_params(threshold="high"), JSON, 400,
     "params.threshold: must be a number, not a string"),
    ("param-string-boolean", with_params(explain="no"), JSON, 400,
     "params.explain: must be true or false, not a string"),
    ("param-unknown", with_params(temperature=1), JSON, 400, "params: unknown name(s) ['temperature']"),
    ("param-null", with_params(top_k=None), JSON, 400, "params.top_k: is null"),
    ("params-not-object", json.dumps({"dataframe_records": [ROW], "params": [1]}).encode(), JSON, 400,
     "params: must be an object, not a list"),
    ("threshold-above-one", with_params(threshold=1.5), JSON, 400, "params.threshold must be a number bet"),
    ("threshold-below-zero", with_params(threshold=-0.1), JSON, 400, "between 0 and 1"),
    ("top-k-negative", with_params(top_k=-1), JSON, 400, "params.top_k must be an integer >= 0"),
    ("threshold-past-double", with_params(threshold=10**400), JSON, 400,
     "params.threshold: must be a finite number"),
    ("decimal-past-double", with_params(threshold=0.5).replace(b"0.5", b"1e999"), JSON, 400,
     "params.threshold: must be a finite number"),
]  # fmt: skip


@pytest.fixture(scope="module")
def proxy(served: str, log_db: str, start_proxy: Callable[..., Proxy]) -> Proxy:
    """A proxy with the default settings (20 MB body limit)."""
    return start_proxy(served, log_db)


def predictions_of(engine: Engine, request_id: str) -> int:
    """How many prediction rows a request has in the log."""
    return count(engine, "SELECT count(*) FROM inference_predictions WHERE request_id = :rid", rid=request_id)


@pytest.mark.parametrize("case", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_gets_a_4xx_naming_the_field_and_writes_no_prediction(
    proxy: Proxy, log_engine: Engine, case: tuple[bytes, str, int, str]
) -> None:
    body, content_type, status, expected = case
    headers = {**HEADERS, "Content-Type": content_type}
    answer = httpx.post(f"{proxy.url}/invocations", content=body, headers=headers, timeout=60)
    assert answer.status_code == status, answer.text
    assert answer.json()["error_code"] in {"BAD_REQUEST", "UNSUPPORTED_MEDIA_TYPE", "INVALID_PARAMETER_VALUE"}
    assert expected in answer.json()["message"]
    assert "Traceback" not in answer.text and 'File "' not in answer.text
    request_id = answer.headers["X-Request-ID"]
    request = logged(log_engine, request_id)
    assert (request["status_code"], predictions_of(log_engine, request_id)) == (status, 0)
    assert request["error"] is not None and expected in request["error"]


def test_good_input_and_its_edges_are_scored(proxy: Proxy) -> None:
    """The checks refuse only what is wrong: optional id, all formats, unicode, unseen categories."""
    frame = rows(3)
    bodies: list[Any] = [
        split_body(frame),
        {"dataframe_records": frame.to_dict(orient="records")},
        {"instances": frame.to_dict(orient="records")},
        {"inputs": frame.to_dict(orient="list")},
        {"dataframe_records": [{k: v for k, v in ROW.items() if k != "employee_id"}]},
        {"dataframe_records": [{**ROW, "Department": "Forschung & Entwicklung 研究 ✓"}]},
        {"dataframe_records": [ROW], "params": {"threshold": 1, "explain": False, "top_k": 0}},
        split_body(rows(300)),
    ]
    for body in bodies:
        answer = httpx.post(f"{proxy.url}/invocations", json=body, headers=HEADERS, timeout=60)
        assert answer.status_code == 200, (body, answer.text)
    assert len(answer.json()["predictions"]) == 300


def test_unseen_category_is_scored_and_flagged_in_the_log(proxy: Proxy, log_engine: Engine) -> None:
    body = {"dataframe_records": [{**ROW, "JobRole": "Astronaut", "OverTime": "Sometimes"}, ROW]}
    answer = httpx.post(f"{proxy.url}/invocations", json=body, headers=HEADERS, timeout=60)
    assert answer.status_code == 200, answer.text
    flags = [p["unseen_categories"] for p in answer.json()["predictions"]]
    assert [sorted(flag) for flag in flags] == [["JobRole", "OverTime"], []]
    logged(log_engine, answer.headers["X-Request-ID"])
    with log_engine.connect() as connection:
        stored = (
            connection.execute(
                text(
                    "SELECT unseen_categories FROM inference_predictions"
                    " WHERE request_id = :rid ORDER BY row_index"
                ),
                {"rid": answer.headers["X-Request-ID"]},
            )
            .scalars()
            .all()
        )
    assert stored == flags


@pytest.mark.parametrize(
    "entity_id", ["abc", "-5", "1' OR '1'='1", "1; DROP TABLE entities; --", "%00", "9" * 300]
)
def test_by_id_with_odd_ids_is_a_clean_404_and_harms_nothing(
    proxy: Proxy, log_engine: Engine, entity_id: str
) -> None:
    before = count(log_engine, "SELECT count(*) FROM inference_requests")
    answer = httpx.post(f"{proxy.url}/predict/by-id/{entity_id}", headers=HEADERS, timeout=30)
    assert answer.status_code == 404, answer.text
    assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    wait_for(lambda: count(log_engine, "SELECT count(*) FROM inference_requests") > before,
             message="the refused request in the log")  # fmt: skip
    assert logged(log_engine, answer.headers["X-Request-ID"])["status_code"] == 404


def test_by_id_body_is_checked_like_params(proxy: Proxy) -> None:
    for body, expected in [
        (b"[1]", "must be a JSON object"),
        (b'{"dataframe_records": []}', "may only hold params"),
        (b'{"params": {"top_k": "3"}}', "params.top_k: must be an integer, not a string"),
    ]:
        answer = httpx.post(f"{proxy.url}/predict/by-id/1", content=body, headers=HEADERS, timeout=30)
        assert answer.status_code == 400 and expected in answer.json()["message"], answer.text


def test_deep_nesting_by_id_is_a_logged_400(proxy: Proxy, log_engine: Engine) -> None:
    body = b"[" * 1_000 + b"]" * 1_000
    answer = httpx.post(f"{proxy.url}/predict/by-id/1", content=body, headers=HEADERS, timeout=30)
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["message"], answer.text
    assert logged(log_engine, answer.headers["X-Request-ID"])["status_code"] == 400


def test_error_bodies_and_stored_errors_are_bounded(proxy: Proxy, log_engine: Engine) -> None:
    wide = json.dumps({"dataframe_records": [{**ROW, **{f"c{n}": 0 for n in range(1_000_000)}}]})
    long_name = json.dumps({"dataframe_records": [{**ROW, "x" * 5_000_000: 0}]})
    for body in (wide, long_name):
        answer = httpx.post(f"{proxy.url}/invocations", content=body, headers=HEADERS, timeout=120)
        assert answer.status_code == 400
        assert len(answer.content) < 1_200, len(answer.content)
        assert len(logged(log_engine, answer.headers["X-Request-ID"])["error"]) <= 1_000


def test_a_wide_body_being_refused_does_not_stall_other_clients(proxy: Proxy) -> None:
    columns = [f"c{n}" for n in range(1_000_000)]
    wide = json.dumps({"dataframe_split": {"columns": columns, "data": [[0] * len(columns)]}}).encode()
    assert len(wide) > 13 * 2**20
    done: dict[str, Any] = {}

    def refuse() -> None:
        done["answer"] = httpx.post(f"{proxy.url}/invocations", content=wide, headers=HEADERS, timeout=120)
        done["at"] = time.monotonic()

    one_row = {"dataframe_records": [ROW]}
    baseline = []
    for _ in range(5):
        started = time.monotonic()
        assert httpx.post(f"{proxy.url}/invocations", json=one_row, headers=HEADERS, timeout=30).is_success
        baseline.append(time.monotonic() - started)
    sender = threading.Thread(target=refuse)
    sender.start()
    time.sleep(0.3)  # The body is on its way; then it is parsed and checked.
    during = []
    while sender.is_alive():
        started = time.monotonic()
        assert httpx.post(f"{proxy.url}/invocations", json=one_row, headers=HEADERS, timeout=30).is_success
        if sender.is_alive():
            during.append(time.monotonic() - started)
    sender.join()
    assert done["answer"].status_code == 400 and "and 999995 more" in done["answer"].json()["message"]
    # Before, the event loop checked the body and no other request was answered until it was refused.
    assert len(during) >= 3, (during, baseline)
    print(
        f"one-row latency: baseline median {sorted(baseline)[2] * 1000:.1f} ms, "
        f"while refusing the wide body max {max(during) * 1000:.1f} ms over {len(during)} requests"
    )


def test_a_client_that_hangs_up_mid_body_is_logged_without_a_traceback(
    proxy: Proxy, log_engine: Engine
) -> None:
    closed = "SELECT count(*) FROM inference_requests WHERE status_code = 499"
    before = count(log_engine, closed)
    head = (
        "POST /invocations HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {API_KEY}\r\nContent-Length: 100000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port)) as connection:
        connection.sendall(head.encode() + GOOD[:50])
        time.sleep(0.5)
    wait_for(lambda: count(log_engine, closed) == before + 1, message="the hung-up request in the log")
    assert "Traceback" not in proxy.log() and "unexpected error" not in proxy.log()
