"""`GET /metrics` of the real proxy: Prometheus text whose counts move with the traffic sent."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import httpx
import pytest
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import register_again
from tests.serving.conftest import HEADERS, Proxy, rows, split_body, wait_for
from training.job import TrainingOutcome

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def proxy(served: str, log_db: str, start_proxy: Callable[..., Proxy]) -> Proxy:
    """The module's proxy, following the registry every second."""
    return start_proxy(served, log_db)


def scrape(proxy: Proxy) -> Samples:
    """Every sample of `/metrics`, by name and labels."""
    answer = httpx.get(f"{proxy.url}/metrics", timeout=10)  # Open, like /ready: no key.
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counts_move_with_traffic(proxy: Proxy) -> None:
    before = scrape(proxy)
    for start in range(0, 10, 2):
        answer = httpx.post(
            f"{proxy.url}/invocations", json=split_body(rows(2, start=start)), headers=HEADERS, timeout=60
        )
        assert answer.status_code == 200, answer.text
    bad = httpx.post(f"{proxy.url}/invocations", json={"rows": []}, headers=HEADERS, timeout=60)
    assert bad.status_code == 400

    def written(samples: Samples) -> tuple[float, float]:
        return (
            value(samples, "serving_rows_scored_total", model_version="1")
            - value(before, "serving_rows_scored_total", model_version="1"),
            value(samples, "serving_log_rows_written_total", table="inference_requests")
            - value(before, "serving_log_rows_written_total", table="inference_requests"),
        )

    # The refused request's record may reach the log in a later write than the scored ones.
    wait_for(lambda: written(scrape(proxy)) == (10, 6), message="10 rows and 6 requests counted as written")
    after = scrape(proxy)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"endpoint": "/invocations", "status": "200", "model_version": "1"}
    assert moved("serving_requests_total", **ok) == 5
    assert moved("serving_requests_total", endpoint="/invocations", status="400", model_version="1") == 1
    assert moved("serving_request_duration_seconds_count", endpoint="/invocations") == 6
    assert moved("serving_upstream_duration_seconds_count") == 5  # The 400 never reached the model.
    assert moved("serving_score_count", model_version="1") == 10
    assert moved("serving_score_bucket", model_version="1", le="1.0") == 10
    assert moved("serving_log_rows_written_total", table="inference_requests") == 6
    assert moved("serving_log_rows_written_total", table="inference_predictions") == 10
    assert value(after, "serving_log_write_failures_total") == 0
    assert ("serving_spool_bytes", ()) in after and ("serving_log_queue_records", ()) in after


def test_backend_restarts_and_model_switches_are_counted(
    proxy: Proxy, served: str, client: MlflowClient, attrition: TrainingOutcome
) -> None:
    before = scrape(proxy)
    os.killpg(proxy.backend_pids()[-1], signal.SIGKILL)
    wait_for(
        lambda: value(scrape(proxy), "serving_backend_restarts_total") == 1, 120, "the restart to be counted"
    )
    proxy.wait_ready()
    version = register_again(client, attrition, served)
    client.set_registered_model_alias(served, "production", version)
    wait_for(
        lambda: (
            value(scrape(proxy), "serving_model_switches_total")
            == value(before, "serving_model_switches_total") + 1
        ),
        120,
        "the switch to be counted",
    )
    answer = httpx.post(f"{proxy.url}/invocations", json=split_body(rows(1)), headers=HEADERS, timeout=60)
    assert answer.headers["X-Model-Version"] == version
    assert value(scrape(proxy), "serving_requests_total", endpoint="/invocations", status="200",
                 model_version=version) == 1  # fmt: skip
