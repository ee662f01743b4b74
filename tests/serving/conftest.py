"""Serving fixtures: a model of its own in Production, PostgreSQL log stores, and real proxy processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine, create_engine, text

from bench.servers import Server
from logstore import store
from logstore.database import make_engine, migrate
from logstore.records import decode_body, input_rows
from logstore.spool import Spool
from serving.proxy.app import create_app
from serving.proxy.auth import parse_keys
from serving.proxy.backend import Backend, free_port
from serving.proxy.runtime import Runtime
from serving.registry import ModelInfo
from serving.settings import ServingSettings
from tests.conftest import REPO, fresh_database, register_again, subprocess_env
from tests.test_clients import production
from training.job import TrainingOutcome

__all__ = ["free_port", "production"]

T = TypeVar("T")
API_KEY = "test-key-0123456789abcdef"
ROTATED_KEY = "next-key-abcdef0123456789"
HEADERS = {"X-API-Key": API_KEY}
# One key a role, as docs/operations.md recommends: an application that scores, the UI that scores and
# reads, an auditor who reads and records outcomes; `ops` (every scope) and its rotated successor are
# what the other tests use.
ROLE_KEYS = {
    "app": "app-key-0123456789abcdef",
    "ui": "ui-key-0123456789abcdef",
    "audit": "audit-key-0123456789abcdef",
}
ALL_SCOPES = "score+read+feedback"
KEYS = [
    f"ops:{API_KEY}:{ALL_SCOPES}", f"next:{ROTATED_KEY}:{ALL_SCOPES}",
    f"app:{ROLE_KEYS['app']}:score", f"ui:{ROLE_KEYS['ui']}:score+read",
    f"audit:{ROLE_KEYS['audit']}:read+feedback",
]  # fmt: skip
NOWHERE = "00000000-0000-4000-8000-000000000000"
# Every route of the proxy: (method, path, body, scope it needs); no scope: open to anyone.
ROUTES = [
    ("POST", "/invocations", {"dataframe_split": {"columns": ["employee_id"], "data": [[1]]}}, "score"),
    ("POST", "/predict/by-id/1", None, "score"),
    ("GET", "/predictions", None, "read"),
    ("GET", f"/predictions/{NOWHERE}", None, "read"),
    ("GET", f"/predictions/{NOWHERE}/record", None, "read"),
    ("GET", f"/predictions/{NOWHERE}/waterfall.png", None, "read"),
    ("GET", "/model", None, "read"),
    ("GET", "/model/card", None, "read"),
    ("GET", "/drift", None, "read"),
    ("GET", "/challenger", None, "read"),
    ("GET", "/rollout", None, "read"),
    ("POST", "/feedback", {"request_id": NOWHERE, "label": "Yes"}, "feedback"),
    *(("GET", path, None, None) for path in ("/ping", "/health", "/version", "/ready", "/metrics")),
    ("GET", "/openapi.json", None, None),
]  # fmt: skip


def rows(count: int, *, start: int = 0) -> pd.DataFrame:
    """Attrition rows as a client sends them: every input column and the id, no target."""
    frame = pd.read_csv(REPO / "data" / "attrition.csv").drop(columns=["Attrition"])
    return frame.iloc[start : start + count].reset_index(drop=True)


def split_body(frame: pd.DataFrame, **params: object) -> dict[str, object]:
    """A `dataframe_split` request body."""
    body: dict[str, object] = {"dataframe_split": frame.to_dict(orient="split", index=False)}
    if params:
        body["params"] = params
    return body


@dataclass
class Proxy(Server):
    """`python -m serving` as a user runs it: the harness of the benchmark and the fault run."""

    spool: Path = Path()

    @classmethod
    def create(cls, workdir: Path, model: str, database_url: str, **env: str) -> Proxy:
        """A proxy on a free port following `model@production`, keys on, rows written every 0.2 s."""
        port = free_port()
        settings = {
            "DATABASE_URL": database_url,
            "API_KEYS": ",".join(KEYS),
            "SERVING_SPOOL_DIR": str(workdir / f"spool-{port}"),
            "SERVING_FLUSH_SECONDS": "0.2",
            **env,
        }
        command = [
            sys.executable, "-m", "serving", "--model", model, "--alias", "production",
            "--port", str(port), "--poll-seconds", "1",
        ]  # fmt: skip
        spool = Path(settings["SERVING_SPOOL_DIR"])
        return cls(
            name=f"serving-{port}", url=f"http://127.0.0.1:{port}", ready_path="/ready", command=command,
            log_path=workdir / f"serving-{port}.log", env=subprocess_env(**settings),
            state_path=spool / "backend.json", cwd=workdir, inherit_env=False, spool=spool,
        )  # fmt: skip

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def backend_pids(self) -> list[int]:
        """Process ids of every backend this proxy started."""
        return self.backend().started_pids if self.state_path and self.state_path.exists() else []

    def started_pids(self) -> list[int]:
        """Process ids of every backend this proxy started, its challenger's (`--shadow`) included."""
        shadow = self.spool / "shadow.json"
        shadowed = json.loads(shadow.read_text())["started_pids"] if shadow.exists() else []
        return [*self.backend_pids(), *shadowed]

    def stop(self, sig: int = signal.SIGTERM, seconds: float = 60, *, group: bool = False) -> int | None:
        """Send `sig` to the proxy process alone (as a supervisor does) and wait for its exit code."""
        return super().stop(sig, seconds, group=group)


def pid_alive(pid: int) -> bool:
    """Whether a process exists (zombies excepted)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(condition: Callable[[], bool], seconds: float = 30, message: str = "condition") -> None:
    """Poll until `condition()` holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {message}")


def logged(engine: Engine, request_id: str) -> dict[str, Any]:
    """The `inference_requests` row of a request, once the writer has stored it."""
    query = "SELECT count(*) FROM inference_requests WHERE request_id = :rid"
    wait_for(lambda: count(engine, query, rid=request_id) == 1, message=f"request {request_id} in the log")
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT * FROM inference_requests WHERE request_id = :rid"), {"rid": request_id}
        ).one()
    return dict(row._mapping)


def count(engine: Engine, sql: str, **params: object) -> int:
    """The integer one SQL query returns."""
    with engine.connect() as connection:
        return int(connection.execute(text(sql), params).scalar_one())


@pytest.fixture(scope="module")
def served(client: MlflowClient, attrition: TrainingOutcome) -> str:
    """A registered model only this module serves, version 1 in Production and @production."""
    name = f"served-{uuid.uuid4().hex[:8]}"
    version = register_again(client, attrition, name)
    client.transition_model_version_stage(name, version, "Production")
    client.set_registered_model_alias(name, "production", version)
    return name


@pytest.fixture(scope="module")
def log_db() -> Iterator[str]:
    """A PostgreSQL database for this module's log store."""
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def log_engine(log_db: str) -> Iterator[Engine]:
    """An engine on the module's log store, for checking what was persisted."""
    engine = create_engine(log_db)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The serving processes' working directory."""
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="module")
def start_proxy(workdir: Path) -> Iterator[Callable[..., Proxy]]:
    """Start proxies; whatever is still running at the end of the module is stopped."""
    started: list[Proxy] = []

    def start(model: str, database_url: str, *, wait: bool = True, **env: str) -> Proxy:
        proxy = Proxy.create(workdir, model, database_url, **env)
        started.append(proxy)
        proxy.start()
        if wait:
            proxy.wait_ready(180)
        return proxy

    yield start
    for proxy in started:
        if proxy.process is not None and proxy.process.poll() is None:
            proxy.stop(signal.SIGKILL)
        for pid in proxy.started_pids():
            if pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)


class FakeBackend(ThreadingHTTPServer):
    """A stand-in for `mlflow models serve` on a real socket: one prediction per row sent.

    Each prediction carries the row's `employee_id` and a score of its `Age` / 100, so a test sees
    which rows an answer is about; `threshold` tells fake backends apart.
    """

    def __init__(self, *, threshold: float = 0.5) -> None:
        super().__init__(("127.0.0.1", 0), _FakeBackendHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.bodies: list[bytes] = []
        self.threshold = threshold
        self.delay = 0.0  # Seconds each call takes, to keep the proxy's call slot busy.
        self.gate: threading.Event | None = None  # When given, calls wait until it is set (60 s at most).
        self.refuse: str | None = None  # A body holding this text is answered 400, as MLflow refuses.


class _FakeBackendHandler(BaseHTTPRequestHandler):
    server: FakeBackend

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read the spool, not this."""

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(200, b"\n")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.bodies.append(body)
        time.sleep(self.server.delay)
        if self.server.gate is not None:
            self.server.gate.wait(60)
        if self.server.refuse is not None and self.server.refuse.encode() in body:
            message = f"Failed to predict data. Error: the model refuses {self.server.refuse!r}"
            self._answer(400, json.dumps({"error_code": "BAD_REQUEST", "message": message}).encode())
            return
        if self.headers.get("Content-Type", "").startswith("text/csv"):
            found: list[dict[str, Any]] = [
                {} for _ in range(max(len(body.decode("utf-8", errors="replace").splitlines()) - 1, 0))
            ]
        else:
            found = input_rows("application/json", decode_body("application/json", body))
        predictions = [
            {"employee_id": row.get("employee_id", 1), "score": row.get("Age", 25) / 100, "prediction": "No",
             "threshold": self.server.threshold, "base_value": -1.0, "unseen_categories": [],
             "contributions": {"Age": 0.5}}
            for row in found
        ]  # fmt: skip
        self._answer(200, json.dumps({"predictions": predictions}).encode())


INPUTS = [
    {"type": "long", "name": "employee_id", "required": False},
    {"type": "long", "name": "Age", "required": True},
    {"type": "string", "name": "OverTime", "required": True},
]
PARAMS = [{"name": "top_k", "type": "long", "default": None, "shape": None}]


def model_info() -> ModelInfo:
    """A small model's registry facts: an optional id, an integer and a category."""
    return ModelInfo(
        name="m", version=7, target="@production", stage=None, aliases=["production"], run_id=None,
        threshold=0.5, metrics={}, inputs=INPUTS, params=PARAMS, labels=("No", "Yes"),
    )  # fmt: skip


def make_runtime(tmp_path: Path, **changes: Any) -> Runtime:
    """A runtime on a SQLite log store and a spool in `tmp_path`, not started: no backend, no writer."""
    settings = ServingSettings(model="m", spool_dir=tmp_path / "spool", **changes)
    engine = make_engine(f"sqlite:///{tmp_path}/log.db")
    migrate(engine)
    return Runtime(settings, engine=engine, keys=parse_keys(settings.api_keys), client=MlflowClient())


def spooled(runtime: Runtime) -> list[dict[str, Any]]:
    """Every record the runtime spooled so far, oldest first."""
    return [record for segment in runtime.spool.seal() for record in Spool.read(segment)]


@contextlib.contextmanager
def fake_server(threshold: float = 0.5) -> Iterator[FakeBackend]:
    """A fake model server in a thread of this process, stopped on leaving."""
    server = FakeBackend(threshold=threshold)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_backend() -> Iterator[FakeBackend]:
    """A fake model server in a thread of this process."""
    with fake_server() as server:
        yield server


def fake_process() -> subprocess.Popen[bytes]:
    """Stands for a backend's process: alive while it runs, stopped with its group by `close`."""
    return subprocess.Popen(["sleep", "600"], start_new_session=True)


@contextlib.contextmanager
def routed_runtime(tmp_path: Path, backend: FakeBackend, **changes: Any) -> Iterator[Runtime]:
    """A runtime routing to a fake backend, with API keys on; `drive` uses and closes it."""
    runtime = make_runtime(tmp_path, api_keys=KEYS, **changes)
    process = fake_process()
    runtime.backend = Backend(info=model_info(), url=backend.url, process=process)
    runtime.not_ready = None
    try:
        yield runtime
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def app_runtime(tmp_path: Path, fake_backend: FakeBackend) -> Iterator[Runtime]:
    """A runtime routing to the fake backend, with API keys on; `drive` uses and closes it."""
    with routed_runtime(tmp_path, fake_backend) as runtime:
        yield runtime


def drive(runtime: Runtime, scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run `scenario` against the proxy app of `runtime` through ASGI (no socket), then close the runtime.

    Closing writes the spooled records to the log store, where `logged_request` reads them.
    """

    async def main() -> T:
        try:
            transport = httpx.ASGITransport(app=create_app(runtime))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://proxy", headers=HEADERS, timeout=60
            ) as client:
                return await scenario(client)
        finally:
            await runtime.close()

    return asyncio.run(main())


def logged_request(runtime: Runtime, request_id: str) -> dict[str, Any]:
    """A request and its predictions as the log store holds them."""
    found = store.get_request(runtime.engine, request_id=uuid.UUID(request_id))
    assert found is not None, f"request {request_id} is not in the log"
    return found
