"""The measurements: interleaved single-row latency, batch throughput, in-process floor, and load."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import joblib
import numpy as np
import pandas as pd
import xgboost as xgb

from logstore.database import make_engine
from logstore.records import Exchange, spool_record, to_rows
from logstore.store import write_log

JSON = {"content-type": "application/json"}


class MeasurementError(RuntimeError):
    """A server answered something other than 200 during a measurement."""


def request_body(frame: pd.DataFrame) -> bytes:
    """A `dataframe_split` body, as clients send it."""
    return b'{"dataframe_split": ' + frame.to_json(orient="split", index=False).encode() + b"}"


def _check(answer: httpx.Response, name: str) -> None:
    if answer.status_code != 200:
        raise MeasurementError(f"{name} answered {answer.status_code}: {answer.text[:300]}")


def interleaved_latencies(
    targets: dict[str, str], bodies: list[bytes], *, rounds: int, warmup: int, seed: int = 0
) -> dict[str, list[float]]:
    """Milliseconds per request to each target, one request to each per round in a shuffled order."""
    # Interleaving makes drifts in the machine's speed fall on every target alike.
    order = list(targets)
    shuffle = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in order}
    with httpx.Client(headers=JSON, timeout=60) as client:
        for n in range(warmup + rounds):
            body = bodies[n % len(bodies)]
            shuffle.shuffle(order)
            for name in order:
                started = time.perf_counter()
                answer = client.post(f"{targets[name]}/invocations", content=body)
                elapsed = (time.perf_counter() - started) * 1000
                _check(answer, name)
                if n >= warmup:
                    times[name].append(elapsed)
    return times


def wide_body(columns: int = 1_000_000) -> bytes:
    """A body of one row and `columns` unknown columns (about 14 MB): parsed and refused with a 400."""
    names = [f"c{n}" for n in range(columns)]
    return json.dumps({"dataframe_split": {"columns": names, "data": [[0] * columns]}}).encode()


def while_refusing(url: str, bodies: list[bytes], wide: bytes, *, rounds: int, wides: int) -> dict[str, Any]:
    """One-row latencies alone, then while `wides` wide bodies are sent one after another and refused."""
    refused: list[int] = []

    def send_wide() -> None:
        with httpx.Client(headers=JSON, timeout=300) as client:
            refused.append(client.post(f"{url}/invocations", content=wide).status_code)

    def one(client: httpx.Client, n: int) -> float:
        started = time.perf_counter()
        _check(client.post(f"{url}/invocations", content=bodies[n % len(bodies)]), url)
        return (time.perf_counter() - started) * 1000

    with httpx.Client(headers=JSON, timeout=60) as client:
        alone = [one(client, n) for n in range(rounds)]
        during: list[float] = []
        for _ in range(wides):
            sender = threading.Thread(target=send_wide)
            sender.start()
            n = 0
            while sender.is_alive():
                elapsed = one(client, n)
                if sender.is_alive():  # Answered while the wide body was still being read or refused.
                    during.append(elapsed)
                n += 1
            sender.join()
    if refused != [400] * wides or not during:
        raise MeasurementError(
            f"the wide bodies were answered {refused}, {len(during)} one-row requests meanwhile"
        )
    return {"alone_ms": alone, "during_ms": during, "wide_bytes": len(wide)}


def batch_latencies(url: str, body: bytes, *, count: int) -> list[float]:
    """Milliseconds per request for `count` sequential requests of one large body (after one warm-up)."""
    times = []
    with httpx.Client(headers=JSON, timeout=300) as client:
        for n in range(count + 1):
            started = time.perf_counter()
            answer = client.post(f"{url}/invocations", content=body)
            if n:
                times.append((time.perf_counter() - started) * 1000)
            _check(answer, url)
    return times


def in_process_rows_per_second(artifacts: Path, frame: pd.DataFrame, *, repeats: int) -> float:
    """Rows/s of the booster's own prediction + TreeSHAP on already encoded rows, as it ships."""
    pipeline = joblib.load(artifacts / "pipeline.joblib")
    columns = [c for c in frame.columns if c in pipeline.feature_names_in_]
    encoded = np.asarray(pipeline.named_steps["preprocess"].transform(frame[columns]), dtype=np.float32)
    booster: xgb.Booster = pipeline.named_steps["model"].get_booster()

    def once() -> None:
        booster.inplace_predict(encoded, predict_type="margin")
        booster.predict(xgb.DMatrix(encoded), pred_contribs=True)

    once()
    started = time.perf_counter()
    for _ in range(repeats):
        once()
    return len(frame) * repeats / (time.perf_counter() - started)


@dataclass
class LoadResult:
    """What a load run saw: answered request ids, failures, latencies and peak memory."""

    seconds: float
    answered: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    peak_rss: int = 0

    @property
    def per_second(self) -> float:
        """Answered requests per second."""
        return len(self.answered) / self.seconds


async def _client_loop(
    client: aiohttp.ClientSession,
    url: str,
    bodies: list[bytes],
    *,
    stop_at: float,
    result: LoadResult,
    offset: int,
) -> None:
    n = offset
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            async with client.post(
                f"{url}/invocations", data=bodies[n % len(bodies)], headers=JSON
            ) as answer:
                content = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.failures.append(f"{type(exc).__name__}: {exc}")
            continue
        finally:
            n += 1
        if answer.status == 200:
            result.answered.append(answer.headers.get("x-request-id", ""))  # The key of its log row.
            result.latencies.append((time.perf_counter() - started) * 1000)
        else:
            result.failures.append(f"{answer.status}: {content[:200]!r}")


def load(
    url: str, bodies: list[bytes], *, clients: int, seconds: float, rss: Callable[[], int]
) -> LoadResult:
    """`clients` concurrent clients sending requests back to back for `seconds`; RSS sampled meanwhile."""
    result = LoadResult(seconds=seconds)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            result.peak_rss = max(result.peak_rss, rss())

    async def run() -> None:
        # aiohttp: the load generator shares the machine's cores with what it measures, and httpx's
        # client costs several times more CPU per request (at 64 clients it took a core of its own).
        connector = aiohttp.TCPConnector(limit=clients)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
            started = time.monotonic()
            stop_at = started + seconds
            await asyncio.gather(
                *(
                    _client_loop(client, url, bodies, stop_at=stop_at, result=result, offset=i * 7)
                    for i in range(clients)
                )
            )
            result.seconds = time.monotonic() - started

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        asyncio.run(run())
    finally:
        done.set()
        sampler.join()
    result.peak_rss = max(result.peak_rss, rss())
    return result


def histogram(url: str, name: str) -> dict[str, float]:
    """A Prometheus histogram of the proxy's `/metrics`: cumulative counts by upper bound, sum and count."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f'{name}_bucket{{le="'):
            bound = line.split('"')[1]
            found[bound] = float(line.rsplit(" ", 1)[1])
        elif line.startswith((f"{name}_sum ", f"{name}_count ")):
            found[line.split(" ", 1)[0].removeprefix(f"{name}_")] = float(line.rsplit(" ", 1)[1])
    return found


def counter(url: str, name: str, label: str = "outcome") -> dict[str, float]:
    """A Prometheus counter of the proxy's `/metrics` with one label: each value's count."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    prefix = f'{name}{{{label}="'
    return {
        line[len(prefix) :].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def shadow_calls(
    url: str,
    before: dict[str, float],
    *,
    requests: int,
    seconds: float = 120,
    metric: str = "serving_shadow_calls_total",
) -> dict[str, float]:
    """Shadow calls made since `before`, by outcome, once every answered request has been accounted for.

    `metric`: `serving_canary_mirror_calls_total` for the canary's calls to production.
    """
    deadline = time.monotonic() + seconds
    while True:
        now = counter(url, metric)
        calls = {key: now.get(key, 0.0) - before.get(key, 0.0) for key in ("ok", "failed", "dropped")}
        if sum(calls.values()) >= requests or time.monotonic() > deadline:
            return {**calls, "requests": float(requests)}
        time.sleep(0.5)


def merged_calls(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """How many requests each backend call carried between two snapshots of `serving_batch_requests`."""
    calls = after.get("count", 0.0) - before.get("count", 0.0)
    requests = after.get("sum", 0.0) - before.get("sum", 0.0)
    bounds = [key for key in after if key not in ("sum", "count")]
    shares, below = {}, 0.0
    for bound in bounds:
        cumulative = after[bound] - before.get(bound, 0.0)
        label = "more" if bound == "+Inf" else f"<= {float(bound):g}"
        shares[label] = (cumulative - below) / calls if calls else 0.0
        below = cumulative
    return {
        "calls": calls,
        "requests": requests,
        "mean": requests / calls if calls else 0.0,
        "shares": shares,
    }


def log_work_ms(database_url: str, body: bytes, answer: bytes, *, repeats: int) -> list[float]:
    """Milliseconds the log takes for one exchange, off the request path: parsing it into rows, storing them.

    What the proxy's writer thread and the database do for every answered request, timed in this
    process against the benchmark's scratch log store (the rows are stored under ids of their own).
    """
    engine = make_engine(database_url)
    times = []
    try:
        for _ in range(repeats):
            exchange = Exchange(
                request_id=str(uuid.uuid4()), client_request_id=None,
                received_at=datetime.now(UTC).isoformat(), key_id=None, endpoint="/invocations",
                model_name="bench-log-work", model_version=1, model_target="@production", status_code=200,
                total_ms=0.0, upstream_ms=0.0, error=None,
            )  # fmt: skip
            record = spool_record(
                exchange, content_type="application/json", body=body, response=answer, id_column="employee_id"
            )
            started = time.perf_counter()
            request, predictions = to_rows(record, hmac_key=None)
            write_log(engine, requests=[request], predictions=predictions)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        engine.dispose()
    return times


def answer(url: str, body: bytes) -> bytes:
    """One answer of a server, as bytes."""
    reply = httpx.post(f"{url}/invocations", content=body, headers=JSON, timeout=300)
    _check(reply, url)
    return reply.content
