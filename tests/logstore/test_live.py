"""Retention and erasure on a log a real proxy writes: nothing answered is lost, nothing erased stays."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
from sqlalchemy import Engine, func, select

from bench.logcheck import count_logged
from bench.logfill import fill
from logstore.database import make_engine, migrate
from logstore.records import pseudonym
from logstore.tables import erasures, inference_predictions, inference_requests
from tests.conftest import subprocess_env
from tests.logstore.test_retention import people
from tests.serving.conftest import HEADERS, Proxy, logged, rows, split_body

KEY = "live-erasure-key"
CLIENTS = 4
REQUESTS = 40  # One-row requests per client.


def _send(url: str, answered: list[str], failed: list[int], offset: int) -> None:
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as http:
        for number in range(REQUESTS):
            answer = http.post("/invocations", json=split_body(rows(1, start=(offset + number) % 1400)))
            if answer.status_code == 200:
                answered.append(answer.headers["X-Request-ID"])
            else:
                failed.append(answer.status_code)


def logstore_command(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m logstore ...` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "logstore", *args], capture_output=True, text=True, timeout=300, check=False,
        env=subprocess_env(DATABASE_URL=database_url, ENTITY_ID_HMAC_KEY=KEY),
    )  # fmt: skip


def test_retention_under_load_and_erasure_through_the_proxy(
    served: str, log_db: str, log_engine: Engine, start_proxy: Callable[..., Proxy]
) -> None:
    engine = make_engine(log_db)
    migrate(engine)
    now = datetime.now(UTC)
    old = people()
    old = old.__class__(**{**old.__dict__, "model_name": served})
    fill(
        engine,
        old,
        rows=3000,
        start=now - timedelta(days=430),
        span=timedelta(days=60),
        id_column="employee_id",
    )
    fill(
        engine,
        old,
        rows=300,
        start=now - timedelta(days=20),
        span=timedelta(days=10),
        id_column="employee_id",
    )
    proxy = start_proxy(served, log_db, ENTITY_ID_HMAC_KEY=KEY)

    answered: list[str] = []
    failed: list[int] = []
    clients = [
        threading.Thread(target=_send, args=(proxy.url, answered, failed, 100 * n)) for n in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    retained = logstore_command(log_db, "retain", "--older-than", "365d")
    for client in clients:
        client.join()
    assert retained.returncode == 0, retained.stderr
    assert "3000 requests, 3000 predictions" in retained.stdout

    assert failed == [] and len(answered) == CLIENTS * REQUESTS
    counted = count_logged(log_db, answered, rows_per_request=1, wait_seconds=60)
    assert counted.stored == counted.answered and counted.lost == 0 and counted.duplicated == 0
    with engine.connect() as connection:
        oldest = connection.execute(select(func.min(inference_requests.c.received_at))).scalar_one()
        kept = connection.execute(
            select(func.count()).select_from(inference_requests).where(inference_requests.c.key_id == "bench")
        ).scalar_one()
    assert oldest >= now - timedelta(days=365) and kept == 300

    # Erasure: an employee the proxy logged under a pseudonym, and the decision record of their request.
    person = str(rows(1, start=100)["employee_id"].iloc[0])
    with httpx.Client(base_url=proxy.url, headers=HEADERS, timeout=60) as http:
        answer = http.post("/invocations", json=split_body(rows(1, start=100)))
        request_id = answer.headers["X-Request-ID"]
        logged(log_engine, request_id)
        assert http.get(f"/predictions/{request_id}/record").status_code == 200
        erased = logstore_command(log_db, "erase", "--entity-id", person, "--model", served, "--by", "dpo")
        assert erased.returncode == 0, erased.stderr
        gone = http.get(f"/predictions/{request_id}/record")
        assert gone.status_code == 404 and "not in the log" in gone.json()["message"]
    with engine.connect() as connection:
        left = connection.execute(
            select(func.count()).select_from(inference_predictions)
            .where(inference_predictions.c.entity_id.in_([person, pseudonym(person, KEY.encode())]))
        ).scalar_one()  # fmt: skip
        recorded = connection.execute(select(erasures.c.erased_by, erasures.c.predictions)).all()
    assert left == 0 and len(recorded) == 1 and recorded[0][0] == "dpo" and recorded[0][1] >= 2
    assert np.all([person not in str(value) for value in recorded[0]])
    engine.dispose()
