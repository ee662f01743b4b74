"""`POST /feedback` against the real proxy and PostgreSQL: outcomes stored, replaced, refused by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.serving.conftest import HEADERS, Proxy, count, logged, rows, split_body

HMAC_KEY = "feedback-test-pseudonym-key-0123456789"


@pytest.fixture(scope="module")
def proxy(served: str, log_db: str, start_proxy: Callable[..., Proxy]) -> Proxy:
    """A proxy that pseudonymises entity ids, so feedback by entity id must go through the pseudonym."""
    return start_proxy(served, log_db, ENTITY_ID_HMAC_KEY=HMAC_KEY)


@pytest.fixture(scope="module")
def scored(proxy: Proxy, log_engine: Engine) -> dict[str, Any]:
    """One logged request of three employees: its id, the employees' ids and the predicted labels."""
    frame = rows(3, start=40)
    answer = httpx.post(f"{proxy.url}/invocations", json=split_body(frame), headers=HEADERS, timeout=60)
    assert answer.status_code == 200, answer.text
    logged(log_engine, answer.headers["X-Request-ID"])
    return {
        "request_id": answer.headers["X-Request-ID"],
        "ids": frame["employee_id"].tolist(),
        "labels": [p["prediction"] for p in answer.json()["predictions"]],
    }


def send(proxy: Proxy, body: Any, headers: dict[str, str] = HEADERS) -> httpx.Response:
    return httpx.post(f"{proxy.url}/feedback", json=body, headers=headers, timeout=30)


def outcomes(engine: Engine, request_id: str, row: int) -> list[tuple[str, bool, str]]:
    """The stored outcomes of one logged row, oldest first."""
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT label, positive, source FROM inference_outcomes"
                " WHERE request_id = :rid AND row_index = :row ORDER BY recorded_at"
            ),
            {"rid": request_id, "row": row},
        )
        return [tuple(item) for item in found]


def test_a_label_is_recorded_then_replaced_and_the_answer_says_so(
    proxy: Proxy, log_engine: Engine, scored: dict[str, Any]
) -> None:
    first = send(proxy, {"request_id": scored["request_id"], "row": 1, "label": "Yes"})
    assert first.status_code == 201, first.text
    assert first.json() == {
        "request_id": scored["request_id"],
        "row": 1,
        "model_version": 1,
        "predicted": scored["labels"][1],
        "label": "Yes",
        "replaced": None,
        "message": "recorded",
    }
    second = send(proxy, {"request_id": scored["request_id"], "row": 1, "label": "No"})
    assert second.status_code == 200, second.text
    assert (second.json()["replaced"], second.json()["message"]) == (
        "Yes",
        "replaced the earlier label 'Yes'",
    )
    assert outcomes(log_engine, scored["request_id"], 1) == [("Yes", True, "api"), ("No", False, "api")]


def test_a_label_by_entity_id_finds_the_pseudonymised_prediction(
    proxy: Proxy, log_engine: Engine, scored: dict[str, Any]
) -> None:
    body = {"entity_id": str(scored["ids"][2]), "label": "No", "observed_at": "2027-03-01T00:00:00+00:00"}
    answer = send(proxy, body)
    assert answer.status_code == 201, answer.text
    assert (answer.json()["request_id"], answer.json()["row"]) == (scored["request_id"], 2)
    assert outcomes(log_engine, scored["request_id"], 2) == [("No", False, "api")]


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"label": "Maybe"}, 400, "label: must be one of ['No', 'Yes'], got 'Maybe'"),
        ({"label": ""}, 400, "body.label: String should have at least 1 character"),
        ({"label": None}, 400, "body.label"),
        ({"row": 3}, 404, "row 3 is not in the log"),
        ({"row": -1}, 400, "body.row: Input should be greater than or equal to 0"),
        ({"request_id": "0b7e1c4e-0000-4000-8000-000000000000"}, 404, "is not in the log"),
        ({"request_id": "not-a-uuid"}, 400, "body.request_id"),
        ({"entity_id": "55501"}, 400, "exactly one of request_id (with row) or entity_id"),
        ({"request_id": None}, 400, "exactly one of request_id (with row) or entity_id"),
        ({"request_id": None, "entity_id": "99999001"}, 404, "the entity has no logged prediction"),
        ({"observed_at": "2027-03-01T00:00:00"}, 400, "body.observed_at: Input should have timezone info"),
        ({"outcome": 1}, 400, "body.outcome: Extra inputs are not permitted"),
        ({"request_id": None, "entity_id": "1\x00"}, 400, "must not contain NUL characters"),
    ],
)
def test_bad_feedback_is_refused_by_name_and_stores_nothing(
    proxy: Proxy,
    log_engine: Engine,
    scored: dict[str, Any],
    *,
    change: dict[str, Any],
    status: int,
    words: str,
) -> None:
    before = count(log_engine, "SELECT count(*) FROM inference_outcomes")
    body = {"request_id": scored["request_id"], "row": 0, "label": "Yes"}
    body.update(change)
    answer = send(proxy, {k: v for k, v in body.items() if v is not None or k == "label"})
    assert answer.status_code == status, answer.text
    assert words in answer.json()["message"]
    assert "99999001" not in answer.text
    assert count(log_engine, "SELECT count(*) FROM inference_outcomes") == before


def test_feedback_needs_a_key_and_a_json_object(proxy: Proxy, scored: dict[str, Any]) -> None:
    body = {"request_id": scored["request_id"], "label": "Yes"}
    assert send(proxy, body, headers={}).status_code == 401
    assert send(proxy, body, headers={"X-API-Key": "wrong-key-wrong-key"}).status_code == 401
    not_json = httpx.post(
        f"{proxy.url}/feedback", content=b"{label", headers={**HEADERS, "content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert send(proxy, [body]).status_code == 400


@pytest.mark.parametrize(("path", "kind"), [("/drift", "drift"), ("/challenger", "compare")])
def test_reports_are_a_404_until_one_exists(proxy: Proxy, path: str, kind: str) -> None:
    answer = httpx.get(f"{proxy.url}{path}", headers=HEADERS, timeout=30)
    assert answer.status_code == 404
    assert f"no {kind} report" in answer.json()["message"]
