"""The proxy's Prometheus metrics, in a registry of its own (one per runtime)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
WAIT_BUCKETS = (0.0001, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class Metrics:
    """Counters, histograms and gauges of one serving process."""

    def __init__(self, *, spool_bytes: Callable[[], float], spool_records: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "serving_requests",
            "Answered requests by endpoint, HTTP status and model version",
            ["endpoint", "status", "model_version"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "serving_request_duration_seconds",
            "Time from receiving a scoring request to answering it",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream = Histogram(
            "serving_upstream_duration_seconds",
            "Time the model server took to answer",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter(
            "serving_rows_scored",
            "Rows scored and written to the log, by model version",
            ["model_version"],
            registry=self.registry,
        )
        self.scores = Histogram(
            "serving_score",
            "Scores (probability of the positive class) written to the log, by model version",
            ["model_version"],
            buckets=SCORE_BUCKETS,
            registry=self.registry,
        )
        self.log_rows = Counter(
            "serving_log_rows_written",
            "Rows written to the log store, by table",
            ["table"],
            registry=self.registry,
        )
        self.log_failures = Counter(
            "serving_log_write_failures",
            "Log-store writes that failed (the records stay in the spool and are retried)",
            registry=self.registry,
        )
        self.log_rejected = Counter(
            "serving_log_records_rejected",
            "Records the log store refused as bad content, set aside in rejected.ndjson",
            registry=self.registry,
        )
        self.log_dropped = Counter(
            "serving_log_records_dropped",
            "Records dropped because the spool was full (policy 'drop')",
            registry=self.registry,
        )
        self.shadow_calls = Counter(
            "serving_shadow_calls",
            "Requests shadowed on the challenger after their answer: ok, failed, dropped (queue full)",
            ["outcome"],
            registry=self.registry,
        )
        self.shadow_latency = Histogram(
            "serving_shadow_duration_seconds",
            "Time the challenger's backend took to answer a shadow call",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.mirror_calls = Counter(
            "serving_canary_mirror_calls",
            "Requests the canary answered, scored again by the production version: ok, failed or dropped",
            ["outcome"],
            registry=self.registry,
        )
        self.canary_requests = Counter(
            "serving_canary_requests",
            "Scoring requests routed while a canary runs, by the arm that answers them",
            ["arm"],
            registry=self.registry,
        )
        self.writer_restarts = Counter(
            "serving_log_writer_restarts",
            "Restarts of the log writer after it crashed (the records wait in the spool meanwhile)",
            registry=self.registry,
        )
        self.restarts = Counter(
            "serving_backend_restarts", "Model servers restarted after they exited", registry=self.registry
        )
        self.switches = Counter(
            "serving_model_switches",
            "Switches to another model version named by the registry",
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "serving_batch_requests",
            "Requests per backend call made by the batcher (1: alone; more: merged)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "serving_batch_rows",
            "Rows per backend call made by the batcher",
            buckets=ROW_BUCKETS,
            registry=self.registry,
        )
        self.batch_wait = Histogram(
            "serving_batch_wait_seconds",
            "Time a request waited in the batcher's queue for a backend call",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.unmerges = Counter(
            "serving_batch_unmerged",
            "Merged calls that failed and were retried request by request",
            registry=self.registry,
        )
        queue = Gauge(
            "serving_log_queue_records",
            "Records spooled and not yet written to the log store",
            registry=self.registry,
        )
        queue.set_function(spool_records)
        size = Gauge("serving_spool_bytes", "Bytes held in the log spool", registry=self.registry)
        size.set_function(spool_bytes)

    def answered(
        self,
        *,
        endpoint: str,
        status: int,
        version: int | None,
        seconds: float,
        upstream_seconds: float | None,
    ) -> None:
        """Count one answered scoring request."""
        self.requests.labels(endpoint, str(status), "" if version is None else str(version)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if upstream_seconds is not None:
            self.upstream.observe(upstream_seconds)

    def written(
        self,
        *,
        requests: Sequence[dict[str, Any]],
        predictions: Sequence[dict[str, Any]],
        shadows: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Count rows the writer stored: log rows, rows scored and their scores."""
        self.log_rows.labels("inference_requests").inc(len(requests))
        self.log_rows.labels("inference_predictions").inc(len(predictions))
        if shadows:
            self.log_rows.labels("shadow_predictions").inc(len(shadows))
        versions = {request["request_id"]: request["model_version"] for request in requests}
        for row in predictions:
            version = str(versions.get(row["request_id"], ""))
            self.rows.labels(version).inc()
            self.scores.labels(version).observe(row["score"])

    def batched(self, *, requests: int, rows: int, waits: Sequence[float]) -> None:
        """Count one backend call of the batcher: its size and how long its requests waited."""
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)
        for wait in waits:
            self.batch_wait.observe(wait)

    def unmerged(self) -> None:
        """Count a merged call retried request by request."""
        self.unmerges.inc()

    def write_failed(self) -> None:
        """Count a failed log-store write."""
        self.log_failures.inc()

    def rejected(self) -> None:
        """Count a record the log store refused."""
        self.log_rejected.inc()

    def writer_restarted(self) -> None:
        """Count a restart of the crashed log writer."""
        self.writer_restarts.inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
