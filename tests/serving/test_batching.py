"""Natural batching in process: requests that wait for a busy backend share one call, invisibly to them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.pyfunc import scoring_server

from serving.proxy.backend import Backend
from serving.proxy.batching import Rows, read_as_json_by_mlflow, split
from serving.proxy.batching import mergeable as merge_rows
from serving.proxy.runtime import Runtime
from tests.serving.conftest import (
    FakeBackend,
    drive,
    fake_process,
    logged_request,
    model_info,
    routed_runtime,
)

JSON = {"Content-Type": "application/json"}
COLUMNS = ("employee_id", "Age", "OverTime")


def _row(employee: int) -> dict[str, Any]:
    return {"employee_id": employee, "Age": 20 + employee, "OverTime": "Yes" if employee % 2 else "No"}


def records(*employees: int, **params: Any) -> bytes:
    """A `dataframe_records` body of these employees."""
    document: dict[str, Any] = {"dataframe_records": [_row(e) for e in employees]}
    return json.dumps({**document, "params": params} if params else document).encode()


def split_body(*employees: int, columns: tuple[str, ...] = COLUMNS, **params: Any) -> bytes:
    """A `dataframe_split` body of these employees, its columns in the order given."""
    data = [[_row(e)[name] for name in columns] for e in employees]
    document: dict[str, Any] = {"dataframe_split": {"columns": list(columns), "data": data}}
    return json.dumps({**document, "params": params} if params else document).encode()


async def busy_then(
    client: httpx.AsyncClient,
    first: bytes,
    others: list[bytes],
    *,
    headers: list[dict[str, str]] | None = None,
) -> list[httpx.Response]:
    """Send `first`, then, while the backend is busy with it, all the others at once."""
    head = asyncio.create_task(client.post("/invocations", content=first, headers=JSON))
    await asyncio.sleep(0.15)  # The first is with the backend now; the others wait for its slot.
    extra = headers or [{} for _ in others]
    rest = await asyncio.gather(
        *(
            client.post("/invocations", content=body, headers={**JSON, **h})
            for body, h in zip(others, extra, strict=True)
        )
    )
    return [await head, *rest]


def sent(body: bytes) -> list[Any]:
    """The employee ids a body the backend received holds, in order."""
    document = json.loads(body)
    if "dataframe_split" in document:
        columns = document["dataframe_split"]["columns"]
        return [row[columns.index("employee_id")] for row in document["dataframe_split"]["data"]]
    return [row["employee_id"] for row in document["dataframe_records"]]


def test_requests_waiting_for_a_busy_backend_share_a_call_and_get_the_bytes_they_get_alone(
    app_runtime: Runtime, fake_backend: FakeBackend
) -> None:
    fake_backend.delay = 0.4
    first = records(1)
    plain = [records(2), split_body(3, 4), split_body(5, columns=tuple(reversed(COLUMNS))), records(6, 7, 8)]
    with_params = [records(9, top_k=2), split_body(10, top_k=2)]
    others = plain + with_params
    client_ids = [
        {"X-Request-ID": "11111111-2222-3333-4444-555555555555"} if i == 3 else {} for i in range(len(others))
    ]

    async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], list[httpx.Response], str]:
        together = await busy_then(client, first, others, headers=client_ids)
        fake_backend.delay = 0.0
        alone = [await client.post("/invocations", content=body, headers=JSON) for body in [first, *others]]
        return together, alone, (await client.get("/metrics")).text

    together, alone, metrics = drive(app_runtime, scenario)
    for merged, single in zip(together, alone, strict=True):
        assert merged.status_code == single.status_code == 200, merged.text
        assert merged.content == single.content
        assert merged.headers["X-Model-Version"] == single.headers["X-Model-Version"] == "7"
    assert len({answer.headers["X-Request-ID"] for answer in together + alone}) == 2 * len(together)
    assert together[4].headers["X-Client-Request-ID"] == "11111111-2222-3333-4444-555555555555"
    # The backend saw three calls: the first as sent, then one per group of requests that can merge.
    calls = fake_backend.bodies[: -len(alone)]
    assert calls[0] == first
    assert [sent(body) for body in calls[1:]] == [[2, 3, 4, 5, 6, 7, 8], [9, 10]]
    assert json.loads(calls[2])["params"] == {"top_k": 2}
    # Each request is logged as its own, with the size of the call that answered it.
    logged = [logged_request(app_runtime, answer.headers["X-Request-ID"]) for answer in together]
    assert [(r["n_rows"], r["batch_requests"], r["batch_rows"]) for r in logged] == [
        (1, 1, 1), (1, 4, 7), (2, 4, 7), (1, 4, 7), (3, 4, 7), (1, 2, 2), (1, 2, 2),
    ]  # fmt: skip
    assert all(r["queue_ms"] > 100 for r in logged[1:])
    assert [p["entity_id"] for p in logged[4]["predictions"]] == ["6", "7", "8"]
    assert "serving_batch_requests_sum 14.0" in metrics  # 7 requests in 3 calls, then 7 alone.
    assert "serving_batch_requests_count 10.0" in metrics
    assert "serving_batch_wait_seconds_count 14.0" in metrics


def test_a_request_the_model_refuses_gets_its_own_error_and_the_others_their_answers(
    app_runtime: Runtime, fake_backend: FakeBackend
) -> None:
    fake_backend.delay, fake_backend.refuse = 0.4, "Poison"
    poisoned = json.dumps({"dataframe_records": [{**_row(3), "OverTime": "Poison"}]}).encode()

    async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], str]:
        answers = await busy_then(client, records(1), [records(2), poisoned, records(4, 5)])
        return answers, (await client.get("/metrics")).text

    answers, metrics = drive(app_runtime, scenario)
    assert [answer.status_code for answer in answers] == [200, 200, 400, 200]
    assert answers[2].json() == {"error_code": "BAD_REQUEST", "message": "the model refuses 'Poison'"}
    assert [p["employee_id"] for p in answers[3].json()["predictions"]] == [4, 5]
    # One merged call, refused; then each of its requests alone.
    assert sent(fake_backend.bodies[1]) == [2, 3, 4, 5]
    assert sorted(map(sent, fake_backend.bodies[2:])) == [[2], [3], [4, 5]]
    assert "serving_batch_unmerged_total 1.0" in metrics
    bad = logged_request(app_runtime, answers[2].headers["X-Request-ID"])
    assert (bad["status_code"], bad["error"], bad["batch_requests"]) == (400, "the model refuses 'Poison'", 1)


def test_csv_and_large_bodies_go_alone_as_they_came(app_runtime: Runtime, fake_backend: FakeBackend) -> None:
    fake_backend.delay = 0.4
    csv = b"employee_id,Age,OverTime\n2,22,No\n"
    large = records(*range(100, 1_600))  # Over 64 KiB: checked in the worker, sent as it came.
    assert len(large) > 64 * 1024

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        head = asyncio.create_task(client.post("/invocations", content=records(1), headers=JSON))
        await asyncio.sleep(0.15)
        rest = await asyncio.gather(
            client.post("/invocations", content=csv, headers={"Content-Type": "text/csv"}),
            client.post("/invocations", content=large, headers=JSON),
            client.post("/invocations", content=records(3), headers=JSON),
            client.post("/invocations", content=records(4), headers=JSON),
        )
        return [await head, *rest]

    answers = drive(app_runtime, scenario)
    assert [answer.status_code for answer in answers] == [200] * 5
    assert csv in fake_backend.bodies and large in fake_backend.bodies
    assert [3, 4] in [sent(body) for body in fake_backend.bodies if body not in (csv, large)]
    for answer, calls in zip(answers[1:3], (None, None), strict=True):
        assert logged_request(app_runtime, answer.headers["X-Request-ID"])["batch_rows"] is calls


def test_with_batching_off_every_request_goes_as_it_came(tmp_path: Path, fake_backend: FakeBackend) -> None:
    fake_backend.delay = 0.3
    bodies = [records(n) for n in range(2, 7)]
    with routed_runtime(tmp_path, fake_backend, batching=False) as runtime:
        answers = drive(runtime, lambda client: busy_then(client, records(1), bodies))
        assert [answer.status_code for answer in answers] == [200] * 6
        assert sorted(fake_backend.bodies) == sorted([records(1), *bodies])
        logged = logged_request(runtime, answers[3].headers["X-Request-ID"])
        assert (logged["batch_requests"], logged["batch_rows"], logged["queue_ms"]) == (1, None, None)


def test_a_model_switch_never_mixes_versions_in_one_call(
    app_runtime: Runtime, fake_backend: FakeBackend
) -> None:
    newer = FakeBackend(threshold=0.75)
    threading.Thread(target=newer.serve_forever, daemon=True).start()
    fake_backend.delay = newer.delay = 0.4
    replacement = Backend(
        info=dataclasses.replace(model_info(), version=8), url=newer.url, process=fake_process()
    )

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        before = asyncio.create_task(busy_then(client, records(1), [records(2), records(3)]))
        await asyncio.sleep(0.3)  # Requests 2 and 3 wait for version 7's slot.
        app_runtime.backend = replacement
        after = await asyncio.gather(
            *(client.post("/invocations", content=records(n), headers=JSON) for n in (4, 5, 6))
        )
        return [*(await before), *after]

    try:
        answers = drive(app_runtime, scenario)
    finally:
        newer.shutdown()
        newer.server_close()
        replacement.process.kill()
        replacement.process.wait()
    thresholds = {"7": 0.5, "8": 0.75}
    for answer in answers:
        assert answer.status_code == 200
        predictions = answer.json()["predictions"]
        assert {p["threshold"] for p in predictions} == {thresholds[answer.headers["X-Model-Version"]]}
    assert [answer.headers["X-Model-Version"] for answer in answers] == ["7", "7", "7", "8", "8", "8"]
    assert [sent(body) for body in fake_backend.bodies] == [[1], [2, 3]]
    assert sorted(n for body in newer.bodies for n in sent(body)) == [4, 5, 6]


def test_split_gives_each_request_its_rows_as_mlflow_writes_them() -> None:
    predictions = [{"score": 0.1, "name": "é"}, {"score": math.nan}, {"score": 1e-20}]
    answer = json.dumps({"predictions": predictions}).encode()
    parts = split(answer, [2, 1])
    assert parts == [
        json.dumps({"predictions": predictions[:2]}).encode(),
        b'{"predictions": [{"score": 1e-20}]}',
    ]
    assert b'"\\u00e9"' in parts[0] and b"NaN" in parts[0]


@pytest.mark.parametrize(
    "answer",
    [b'{"predictions": [1, 2]}', b"[1, 2, 3]", b'{"predictions": [1, 2, 3], "extra": 1}', b"not json"],
)
def test_an_answer_without_one_prediction_per_row_is_not_split(answer: bytes) -> None:
    assert split(answer, [2, 1]) is None


def test_only_bodies_of_one_shape_per_row_can_merge() -> None:
    def mergeable(payload: dict[str, Any]) -> Rows | None:
        return merge_rows(payload, "application/json")

    reordered = mergeable(json.loads(split_body(1, 2, columns=("OverTime", "Age", "employee_id"))))
    plain, with_params = mergeable(json.loads(records(5))), mergeable(json.loads(records(5, top_k=2)))
    assert reordered is not None and plain is not None and with_params is not None
    assert reordered.values(COLUMNS) == [[1, 21, "Yes"], [2, 22, "No"]]
    assert reordered.key == plain.key != with_params.key  # Same columns in any order, same params.
    assert mergeable({"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [7]}}) is None
    assert mergeable({"dataframe_records": [{"a": 1}, {"a": 2, "b": 3}]}) is None
    assert mergeable({"instances": [{"a": 1}]}) is None
    assert mergeable({"dataframe_records": []}) is None


# What MLflow's scoring server tells apart in a Content-Type: case, parameters, charset spelling, quotes.
CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-8", "application/json; charset=UTF-8",
    "application/json;charset=utf-8", " application/json ", "Application/JSON", "APPLICATION/JSON",
    "application/json; charset=utf8", 'application/json; charset="utf-8"', "application/json;",
    "application/json; format=pandas-records", "application/json; charset=utf-8; q=1",
    "application/json; charset=latin-1", "application/json ;charset=utf-8", "text/csv", "text/json", "",
]  # fmt: skip


def _mlflow_reads_json(content_type: str) -> bool:
    """MLflow's own verdict: its `invocations` answers 415 before reading the body, or goes on to read it."""
    try:
        answer = scoring_server.invocations(b"{}", content_type, None, None)
    except Exception:
        return content_type.split(";", maxsplit=1)[0].strip() == "application/json"
    return answer.status != 415 and content_type.split(";", maxsplit=1)[0].strip() == "application/json"


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_only_what_mlflow_reads_as_json_may_share_a_call(content_type: str) -> None:
    assert read_as_json_by_mlflow(content_type) == _mlflow_reads_json(content_type)
    assert (merge_rows(json.loads(records(1)), content_type) is not None) == _mlflow_reads_json(content_type)
