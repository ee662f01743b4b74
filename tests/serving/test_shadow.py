"""Shadow scoring in the proxy, in process: a challenger never changes or delays an answer, and is logged."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, select

from logstore.tables import inference_requests, shadow_predictions
from serving.proxy.backend import Backend
from serving.proxy.runtime import Runtime
from tests.conftest import register_again
from tests.serving.conftest import (
    HEADERS,
    FakeBackend,
    Proxy,
    count,
    drive,
    fake_process,
    fake_server,
    model_info,
    routed_runtime,
    rows,
    split_body,
    wait_for,
)
from training.job import TrainingOutcome

BODY = split_body(rows(2).assign(employee_id=[1, 2], Age=[30, 40])[["employee_id", "Age", "OverTime"]])


@pytest.fixture
def challenger() -> Iterator[FakeBackend]:
    """A second fake model server; its threshold (0.7) tells its answers apart."""
    with fake_server(threshold=0.7) as server:
        yield server


def shadowed(runtime: Runtime, challenger: FakeBackend | None) -> None:
    """Route the runtime's shadow to a fake challenger (version 8), or to none, and start its workers."""
    assert runtime.shadow is not None
    if challenger is not None:
        info = dataclasses.replace(model_info(), version=8, target="@staging", aliases=["staging"])
        runtime.shadow.supervisor.backend = Backend(info=info, url=challenger.url, process=fake_process())
    runtime.shadow.start_workers()


def shadow_calls(runtime: Runtime, outcome: str) -> float:
    """The shadow-call counter of one outcome."""
    value = runtime.metrics.registry.get_sample_value("serving_shadow_calls_total", {"outcome": outcome})
    return value or 0.0


def send(
    tmp_path: Path,
    main: FakeBackend,
    n: int,
    *,
    challenger: FakeBackend | None = None,
    shadow: bool = True,
    drain: bool = True,
) -> tuple[list[httpx.Response], list[float], Runtime]:
    """`n` requests one by one, then (`drain`) the shadow's queue emptied; answers, seconds, runtime."""
    settings = {"shadow": "staging", "shadow_queue": 1} if shadow else {}
    tmp_path.mkdir()
    with routed_runtime(tmp_path, main, **settings) as runtime:

        async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], list[float]]:
            if shadow:
                shadowed(runtime, challenger)
            answers, seconds = [], []
            for _ in range(n):
                started = time.perf_counter()
                answers.append(await client.post("/invocations", json=BODY))
                seconds.append(time.perf_counter() - started)
            if shadow and drain and runtime.shadow is not None:
                await runtime.shadow.queue.join()
            return answers, seconds

        answers, seconds = drive(runtime, scenario)
    return answers, seconds, runtime


def test_a_slow_challenger_changes_no_answer_and_delays_none(
    tmp_path: Path, fake_backend: FakeBackend, challenger: FakeBackend
) -> None:
    plain, _, _ = send(tmp_path / "off", fake_backend, 20, shadow=False)
    challenger.gate = threading.Event()  # The challenger answers nothing until every answer is in (60 s).
    started = time.perf_counter()
    try:
        answers, seconds, runtime = send(
            tmp_path / "on", fake_backend, 20, challenger=challenger, drain=False
        )
        closed_after = time.perf_counter() - started
    finally:
        challenger.gate.set()
    assert closed_after < 30.0  # Closing the proxy stopped the held challenger calls, did not wait for them.
    assert [a.status_code for a in answers] == [200] * 20
    assert [a.content for a in answers] == [a.content for a in plain]  # The same bytes.
    # An answer that waited for the challenger would take its 60 s; a loaded machine has stalled one 2.4 s.
    assert max(seconds) < 20.0, seconds
    # A job in each worker's hands (SERVING_SHADOW_WORKERS) and one in the queue of one; the rest were not.
    assert runtime.settings.shadow_workers == 2
    assert shadow_calls(runtime, "dropped") >= 20 - runtime.settings.shadow_workers - 1


def test_shadow_answers_are_logged_with_the_request_they_shadow(
    tmp_path: Path, fake_backend: FakeBackend, challenger: FakeBackend
) -> None:
    with routed_runtime(tmp_path, fake_backend, shadow="staging") as runtime:

        async def scenario(client: httpx.AsyncClient) -> list[str]:
            shadowed(runtime, challenger)
            ids = [(await client.post("/invocations", json=BODY)).headers["X-Request-ID"] for _ in range(3)]
            assert runtime.shadow is not None
            await runtime.shadow.queue.join()
            return ids

        ids = drive(runtime, scenario)
    assert shadow_calls(runtime, "ok") == 3
    with runtime.engine.connect() as connection:
        found = connection.execute(
            select(shadow_predictions, inference_requests.c.model_version.label("served")).join(
                inference_requests, inference_requests.c.request_id == shadow_predictions.c.request_id
            )
        ).all()
    assert sorted({str(row.request_id) for row in found}) == sorted(ids)
    assert len(found) == 6  # Two rows per request.
    assert {(row.served, row.model_version, row.threshold, row.error) for row in found} == {(7, 8, 0.7, None)}
    assert sorted(row.score for row in found if row.row_index == 1) == [0.4] * 3  # Age / 100.
    assert all(row.latency_ms > 0 and row.contributions == {"Age": 0.5} for row in found)


def test_a_failing_or_absent_challenger_is_logged_or_counted_and_answers_go_on(
    tmp_path: Path, fake_backend: FakeBackend, challenger: FakeBackend
) -> None:
    challenger.refuse = "OverTime"  # Every shadow call is refused (400), as MLflow refuses a body.
    answers, _, runtime = send(tmp_path / "refused", fake_backend, 1, challenger=challenger)
    assert answers[0].status_code == 200 and shadow_calls(runtime, "failed") == 1
    with runtime.engine.connect() as connection:
        row = connection.execute(select(shadow_predictions)).one()
    assert row.score is None and "the challenger answered 400" in row.error

    answers, _, runtime = send(tmp_path / "absent", fake_backend, 3, challenger=None)
    assert [a.status_code for a in answers] == [200] * 3 and shadow_calls(runtime, "dropped") == 3


def test_a_real_proxy_shadows_the_staging_version(
    client: MlflowClient,
    served: str,
    attrition: TrainingOutcome,
    log_db: str,
    start_proxy: Callable[..., Proxy],
) -> None:
    staging = register_again(client, attrition, served)
    client.transition_model_version_stage(served, staging, "Staging")
    client.set_registered_model_alias(served, "staging", staging)
    proxy = start_proxy(served, log_db, SERVING_SHADOW="staging")
    state = proxy.spool / "shadow.json"  # Written once the challenger's backend answers.
    wait_for(state.exists, 180, "the challenger's backend")
    body = json.dumps(split_body(rows(5)))
    # Each Content-Type MLflow reads as JSON: its shadow call carries it and succeeds too.
    accepted = ["application/json", "application/json; charset=utf-8", "application/json; charset=UTF-8",
                "application/json;charset=utf-8"]  # fmt: skip
    with httpx.Client(base_url=proxy.url, headers=HEADERS, timeout=60) as http:
        answers = [
            http.post("/invocations", content=body, headers={"Content-Type": kind}) for kind in accepted
        ]
    assert [answer.status_code for answer in answers] == [200] * 4
    assert {answer.headers["X-Model-Version"] for answer in answers} == {"1"}
    ids = [answer.headers["X-Request-ID"] for answer in answers]
    engine = create_engine(log_db)
    try:
        query = (
            "SELECT count(*) FROM shadow_predictions s JOIN inference_requests r USING (request_id) "
            f"WHERE s.model_version = {staging} AND r.model_version = 1 AND s.error IS NULL "
            f"AND s.request_id IN ({','.join(repr(i) for i in ids)})"
        )
        wait_for(lambda: count(engine, query) == 20, 60, "20 shadow rows in the log")
        same = (
            "SELECT count(*) FROM inference_predictions p "
            "JOIN shadow_predictions s USING (request_id, row_index)"
        )
        assert (
            count(engine, f"{same} WHERE abs(p.score - s.score) < 1e-9") == 20
        )  # The same artifacts registered twice: the same scores.
    finally:
        engine.dispose()
    metrics = httpx.get(f"{proxy.url}/metrics", timeout=10).text
    assert 'serving_shadow_calls_total{outcome="ok"} 4.0' in metrics


def test_the_shadow_stops_when_its_alias_is_gone(
    tmp_path: Path, fake_backend: FakeBackend, challenger: FakeBackend
) -> None:
    with routed_runtime(tmp_path, fake_backend, shadow="staging") as runtime:

        async def scenario(client: httpx.AsyncClient) -> subprocess.Popen[bytes]:
            shadowed(runtime, challenger)
            assert runtime.shadow is not None and runtime.shadow.supervisor.backend is not None
            process = runtime.shadow.supervisor.backend.process
            # The registry has no `m@staging` (as after the challenger's promotion): its backend stops.
            await runtime.shadow.supervisor.check()
            assert runtime.shadow.supervisor.backend is None
            assert "m@staging" in (runtime.shadow.supervisor.not_ready or "")
            assert (await client.post("/invocations", json=BODY)).status_code == 200
            await runtime.shadow.queue.join()
            return process

        process = drive(runtime, scenario)
    assert process.poll() is not None  # The challenger's process group was stopped.
    assert shadow_calls(runtime, "dropped") == 1 and shadow_calls(runtime, "ok") == 0
