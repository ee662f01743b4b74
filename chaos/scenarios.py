"""The faults, each injected into real processes under traffic, with the figures and the promises kept."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.logcheck import count_logged
from bench.servers import Server, ServerError, proxy
from chaos.relay import Relay

LOG_WITHIN_SECONDS = 30.0  # Every answered request must be in the log this long after a fault ends.
HANG_LIMIT_SECONDS = 1.0  # A request slower than this during a database fault waited on the database.


@dataclass
class Result:
    """One request a client sent."""

    client: int
    sent_at: float
    seconds: float
    status: int  # 0: no HTTP answer (connection refused or reset)
    request_id: str
    version: str  # X-Model-Version, "" when there was none
    message: str
    served_by: str = ""  # A load balancer's X-Served-By: which replica answered.


@dataclass
class Outcome:
    """What one scenario did, what it measured, and which promises it found broken."""

    name: str
    fault: str
    sent: int = 0
    answered: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    logged: int = 0
    lost: int = 0
    duplicated: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The outcome as plain data."""
        return asdict(self)


def _message(answer: httpx.Response) -> str:
    """An error answer's message: ours is JSON; a load balancer's may be an HTML page."""
    try:
        return str(answer.json().get("message", ""))
    except ValueError:
        return answer.text[:200]


class Traffic:
    """Clients sending one request after another from threads, every answer kept in order."""

    def __init__(self, url: str, body: bytes, *, clients: int, headers: dict[str, str]) -> None:
        self.url, self.body, self.headers = url, body, {**headers, "Content-Type": "application/json"}
        self.clients = clients
        self.results: list[Result] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]

    def _run(self, client: int) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=120) as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    answer = http.post("/invocations", content=self.body)
                    message = "" if answer.status_code == 200 else _message(answer)
                    result = Result(client, sent, time.monotonic() - sent, answer.status_code,
                                    answer.headers.get("X-Request-ID", ""),
                                    answer.headers.get("X-Model-Version", ""), message,
                                    answer.headers.get("X-Served-By", ""))  # fmt: skip
                except httpx.TransportError as exc:
                    result = Result(client, sent, time.monotonic() - sent, 0, "", "", type(exc).__name__)
                    time.sleep(0.05)
                self.results.append(result)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def answered(self) -> list[str]:
        """Request ids answered 200."""
        return [result.request_id for result in self.results if result.status == 200]

    def failures(self) -> list[Result]:
        """Requests not answered 200."""
        return [result for result in self.results if result.status != 200]

    def versions_by_client(self) -> list[list[str]]:
        """The model versions each client was answered by, in the order it sent its requests."""
        return [[r.version for r in self.results if r.client == n] for n in range(self.clients)]


@dataclass
class Stage:
    """What every scenario works with: the model, the log store behind a relay, and a work directory."""

    model: str
    database_url: str  # Direct, for counting.
    relayed_url: str  # Through the relay, for the proxies.
    relay: Relay
    workdir: Path
    body: bytes
    clients: int
    fault_seconds: float
    api_key: str = "chaos-key-0123456789abcdef"

    def proxy(self, name: str, **env: str) -> Server:
        """A started, ready proxy on the relayed log store."""
        keys = {"API_KEYS": f"chaos:{self.api_key}:score+read+feedback"}
        server = proxy(name, self.model, self.workdir, database_url=self.relayed_url, log_requests=True,
                       workers=1, env={**keys, **env})  # fmt: skip
        server.start().wait_ready()
        return server

    def traffic(self, server: Server) -> Traffic:
        """Clients on a proxy."""
        return Traffic(server.url, self.body, clients=self.clients, headers={"X-API-Key": self.api_key})


def _settle(stage: Stage, outcome: Outcome, traffic: Traffic, since: float) -> None:
    """Count what reached the log of the answered requests; time it from `since`."""
    answered = traffic.answered()
    counted = count_logged(stage.database_url, answered, rows_per_request=1, wait_seconds=LOG_WITHIN_SECONDS)
    outcome.sent = len(traffic.results)
    outcome.answered = counted.answered
    outcome.refused = dict(Counter(str(r.status) for r in traffic.failures()))
    outcome.logged, outcome.lost, outcome.duplicated = counted.stored, counted.lost, counted.duplicated
    if counted.stored == counted.answered:
        outcome.seconds["all_logged_after_fault"] = round(time.monotonic() - since, 2)
    if counted.lost or counted.duplicated:
        outcome.broken.append(f"{counted.lost} answered request(s) lost, {counted.duplicated} duplicated")
    if counted.stored < counted.answered:
        outcome.broken.append(f"not all answered requests were logged within {LOG_WITHIN_SECONDS:g} s")


def _ready_status(server: Server) -> tuple[int, float]:
    started = time.monotonic()
    try:
        status = httpx.get(f"{server.url}/ready", timeout=30).status_code
    except httpx.HTTPError:
        status = 0
    return status, time.monotonic() - started


def database_outage(stage: Stage, server: Server) -> Outcome:
    """PostgreSQL unreachable for the fault's length under traffic: nothing fails, nothing is lost."""
    outcome = Outcome("database_outage", f"PostgreSQL cut off for {stage.fault_seconds:g} s")
    with stage.traffic(server) as traffic:
        time.sleep(2)
        stage.relay.cut()
        time.sleep(stage.fault_seconds / 2)
        ready, _ = _ready_status(server)
        time.sleep(stage.fault_seconds / 2)
        stage.relay.restore()
        restored = time.monotonic()
        time.sleep(2)
    if ready != 503:
        outcome.broken.append(f"/ready answered {ready} during the outage, not 503")
    if failed := traffic.failures():
        outcome.broken.append(f"{len(failed)} request(s) failed during the outage: {failed[0].message}")
    _settle(stage, outcome, traffic, restored)
    return outcome


def slow_database(stage: Stage, server: Server) -> Outcome:
    """PostgreSQL connections hang: the request path does not slow down, /ready says so in time."""
    outcome = Outcome("slow_database", f"PostgreSQL connections hang for {stage.fault_seconds:g} s")
    with stage.traffic(server) as traffic:
        time.sleep(3)
        stage.relay.hang()
        hung = time.monotonic()
        time.sleep(stage.fault_seconds / 2)
        ready, ready_seconds = _ready_status(server)
        time.sleep(max(0.0, stage.fault_seconds - (time.monotonic() - hung)))
        stage.relay.restore()
        restored = time.monotonic()
        time.sleep(2)
    before = [r.seconds for r in traffic.results if r.sent_at < hung and r.status == 200]
    during = [r.seconds for r in traffic.results if hung <= r.sent_at < restored]
    outcome.seconds |= {
        "median_request_before": round(statistics.median(before), 4),
        "median_request_during": round(statistics.median(during), 4),
        "slowest_request_during": round(max(during), 4),
        "ready_answer": round(ready_seconds, 2),
    }
    if ready != 503:
        outcome.broken.append(f"/ready answered {ready} while the database hung, not 503")
    if max(during) > HANG_LIMIT_SECONDS:
        outcome.broken.append(f"a request took {max(during):.1f} s while the database hung")
    if failed := traffic.failures():
        outcome.broken.append(f"{len(failed)} request(s) failed while the database hung: {failed[0].message}")
    _settle(stage, outcome, traffic, restored)
    return outcome


def backend_pid(server: Server) -> int:
    """The process id of the proxy's current `mlflow models serve`."""
    pid = server.backend().pid
    if pid is None:
        raise ServerError(f"{server.name} has no backend running")
    return pid


def _wait_ready(server: Server, wanted: int, seconds: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if _ready_status(server)[0] == wanted:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def backend_kill(stage: Stage, server: Server) -> Outcome:
    """`mlflow models serve` SIGKILLed under traffic: 503 at once, restarted by the proxy, recovered."""
    outcome = Outcome("backend_kill", "the backend (`mlflow models serve`) SIGKILLed")
    assert server.process is not None
    with stage.traffic(server) as traffic:
        time.sleep(2)
        os.killpg(backend_pid(server), signal.SIGKILL)
        killed = time.monotonic()
        turned = _wait_ready(server, 503, 10)
        back = _wait_ready(server, 200, 180)
        time.sleep(2)
    after = [r for r in traffic.results if r.sent_at >= killed]
    first_ok = min((r.sent_at + r.seconds for r in after if r.status == 200), default=None)
    outcome.seconds |= {
        "ready_503_after": round(turned, 2) if turned is not None else -1,
        "ready_again_after": round(back, 2) if back is not None else -1,
        "traffic_back_after": round(first_ok - killed, 2) if first_ok else -1,
        "slowest_request": round(max(r.seconds for r in traffic.results), 2),
    }
    if turned is None or turned > 2:
        outcome.broken.append("/ready did not turn 503 within 2 s of the kill")
    if back is None:
        outcome.broken.append("the backend was not restarted within 180 s")
    if odd := {r.status for r in traffic.results} - {200, 503}:
        outcome.broken.append(f"clients saw statuses other than 200 and 503: {sorted(odd)}")
    if max(r.seconds for r in traffic.results) > HANG_LIMIT_SECONDS * 5:
        outcome.broken.append("a request hung after the kill instead of getting 503")
    if server.process.poll() is not None:
        outcome.broken.append("the proxy itself exited")
    _settle(stage, outcome, traffic, killed)
    return outcome


def _spooled(directory: Path) -> int:
    total = 0
    for segment in directory.glob("[0-9]*.jsonl"):
        with segment.open("rb") as handle:
            total += sum(1 for _ in handle)
    return total


def proxy_kill(stage: Stage, server: Server) -> tuple[Outcome, Server]:
    """The proxy SIGKILLed under traffic and started again: its spool is replayed, none twice."""
    outcome = Outcome("proxy_kill", "the proxy SIGKILLed, then started again on the same spool")
    assert server.process is not None
    spool = Path(server.env["SERVING_SPOOL_DIR"])
    with stage.traffic(server) as traffic:
        time.sleep(3)
        server.process.kill()
        server.process.wait(10)
        time.sleep(0.5)
    outcome.seconds["records_in_spool_at_kill"] = float(_spooled(spool))
    restarting = time.monotonic()
    again = stage.proxy(server.name + "-again", SERVING_SPOOL_DIR=str(spool))
    outcome.seconds["restart_to_ready"] = round(time.monotonic() - restarting, 2)
    if not outcome.seconds["records_in_spool_at_kill"]:
        outcome.broken.append("the kill left nothing in the spool, so the replay was not exercised")
    _settle(stage, outcome, traffic, restarting)
    return outcome, again


def spool_full(stage: Stage, spool_bytes: int) -> Outcome:
    """A tiny spool and PostgreSQL cut off: requests are refused with 503, never answered unlogged."""
    outcome = Outcome("spool_full", f"a {spool_bytes // 1000} kB spool while PostgreSQL is cut off")
    server = stage.proxy("spool-full", SERVING_SPOOL_MAX_BYTES=str(spool_bytes))
    try:
        with stage.traffic(server) as traffic:
            time.sleep(1)
            stage.relay.cut()
            cut = time.monotonic()
            deadline = cut + 60
            while time.monotonic() < deadline and not any(r.status == 503 for r in traffic.results):
                time.sleep(0.1)
            full = time.monotonic()
            time.sleep(3)
            stage.relay.restore()
            restored = time.monotonic()
            deadline = restored + LOG_WITHIN_SECONDS
            while time.monotonic() < deadline and not any(
                r.status == 200 and r.sent_at > restored for r in traffic.results
            ):
                time.sleep(0.1)
            time.sleep(1)
        refused = [r for r in traffic.results if r.status == 503]
        first_ok = min((r.sent_at + r.seconds for r in traffic.results
                        if r.status == 200 and r.sent_at > restored), default=None)  # fmt: skip
        outcome.seconds |= {
            "full_after_cut": round(full - cut, 2),
            "answering_again_after_restore": round(first_ok - restored, 2) if first_ok else -1,
        }
        if not refused:
            outcome.broken.append("the spool never filled, so refusal was not exercised")
        if any("spool is full" not in r.message for r in refused):
            outcome.broken.append("a 503 did not say the spool is full")
        if odd := {r.status for r in traffic.results} - {200, 503}:
            outcome.broken.append(f"clients saw statuses other than 200 and 503: {sorted(odd)}")
        if first_ok is None:
            outcome.broken.append(f"requests were not answered again within {LOG_WITHIN_SECONDS:g} s")
        _settle(stage, outcome, traffic, restored)
    finally:
        server.stop()
    return outcome


def run_all(stage: Stage, *, spool_bytes: int = 100_000) -> list[Outcome]:
    """Every scenario, in an order that reuses one proxy where a fault leaves it as it was."""
    outcomes = []
    server = stage.proxy("chaos")
    try:
        outcomes.append(database_outage(stage, server))
        outcomes.append(slow_database(stage, server))
        outcomes.append(backend_kill(stage, server))
        killed, server = proxy_kill(stage, server)
        outcomes.append(killed)
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            stage.relay.restore()
    outcomes.append(spool_full(stage, spool_bytes))
    return outcomes


def request_body(frame_json: str) -> bytes:
    """A one-row `dataframe_split` body from `DataFrame.to_json(orient="split", index=False)`."""
    return json.dumps({"dataframe_split": json.loads(frame_json)}).encode()
