"""The serving command's promises under change and failure, with real processes and a real PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from chaos.scenarios import Traffic
from logstore.database import make_engine
from registry_scripts.__main__ import main as registry_main
from tests.conftest import REPO, admin_sql, fresh_database, register_again, subprocess_env
from tests.serving.conftest import HEADERS, Proxy, count, free_port, pid_alive, rows, split_body, wait_for
from training.job import TrainingOutcome

BODY = split_body(rows(2), top_k=3)


def traffic(url: str) -> Traffic:
    """Three clients posting BODY one request after another."""
    return Traffic(url, json.dumps(BODY).encode(), clients=3, headers=HEADERS)


@pytest.fixture(scope="module")
def log_engine(log_db: str) -> Iterator[Engine]:
    """An engine that survives the database being cut off and coming back."""
    engine = create_engine(log_db, pool_pre_ping=True)
    yield engine
    engine.dispose()


def post(proxy: Proxy, n: int) -> list[str]:
    """Send `n` two-row requests one by one; their request ids."""
    ids = []
    with httpx.Client(base_url=proxy.url, headers=HEADERS, timeout=60) as http:
        for _ in range(n):
            answer = http.post("/invocations", json=BODY)
            assert answer.status_code == 200, answer.text
            ids.append(answer.headers["X-Request-ID"])
    return ids


def stored(engine: Engine, ids: list[str]) -> tuple[int, int]:
    """How many of these requests, and of their predictions, the log holds."""
    joined = ",".join(f"'{request_id}'" for request_id in ids)
    return (
        count(engine, f"SELECT count(*) FROM inference_requests WHERE request_id IN ({joined})"),
        count(engine, f"SELECT count(*) FROM inference_predictions WHERE request_id IN ({joined})"),
    )


@pytest.fixture(scope="module")
def proxy(served: str, log_db: str, start_proxy: Callable[..., Proxy]) -> Proxy:
    """The module's long-running proxy, following the registry every second."""
    return start_proxy(served, log_db)


def test_database_outage_in_traffic_loses_and_duplicates_nothing(
    proxy: Proxy, log_db: str, log_engine: Engine
) -> None:
    name = log_db.rsplit("/", 1)[1]
    admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    admin_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    try:
        with traffic(proxy.url) as sent:
            time.sleep(3)
            ready = httpx.get(f"{proxy.url}/ready", timeout=10)
            assert ready.status_code == 503
            assert any("unreachable" in reason for reason in ready.json()["reasons"])
        assert list(proxy.spool.glob("*.jsonl")), "rows should wait in the spool"
    finally:
        admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert sent.results and not sent.failures()
    ids = sent.answered()
    wait_for(lambda: stored(log_engine, ids)[0] == len(ids), message="spooled rows to reach the database")
    assert stored(log_engine, ids) == (len(ids), 2 * len(ids))
    assert httpx.get(f"{proxy.url}/ready").status_code == 200


def test_promotion_and_rollback_in_traffic_switch_versions_without_failures(
    proxy: Proxy, served: str, client: MlflowClient, attrition: TrainingOutcome, log_engine: Engine
) -> None:
    version = register_again(client, attrition, served)
    with traffic(proxy.url) as sent:
        assert registry_main(["promote", "--model", served, "--version", version, "--to", "production"]) == 0
        wait_for(
            lambda: sent.results[-1].version == version, seconds=120, message="the switch to the new version"
        )
        time.sleep(1)
    assert sent.results and not sent.failures()
    # Each client sends one request after another, so each sees version 1, then only the new one.
    # Across clients, a request sent just before the switch may finish just after one sent after it.
    for versions in sent.versions_by_client():
        switch = versions.index(version)
        assert set(versions[:switch]) <= {"1"} and set(versions[switch:]) == {version}
    assert any("1" in versions for versions in sent.versions_by_client())

    with traffic(proxy.url) as back:
        # Version 1 was put in Production by the fixture, not through the gates: rollback needs --force.
        assert registry_main(["rollback", "--model", served, "--reason", "test", "--force"]) == 0
        wait_for(lambda: back.results[-1].version == "1", seconds=120, message="the switch back to version 1")
    assert back.results and not back.failures()
    last_id = back.results[-1].request_id
    wait_for(lambda: stored(log_engine, [last_id])[0] == 1, message="the last request in the log")
    logged = count(log_engine, f"SELECT model_version FROM inference_requests WHERE request_id = '{last_id}'")
    assert logged == 1
    assert count(log_engine, f"SELECT count(*) FROM inference_requests WHERE model_version = {version}") > 0
    old = proxy.backend_pids()[:-1]
    wait_for(lambda: not any(pid_alive(pid) for pid in old), message="replaced backends to stop")


def test_sigterm_finishes_requests_writes_queued_rows_and_leaves_no_child(
    served: str, log_db: str, log_engine: Engine, start_proxy: Callable[..., Proxy]
) -> None:
    quiet = start_proxy(served, log_db, SERVING_FLUSH_SECONDS="3600")
    ids = post(quiet, 5)
    time.sleep(1)
    assert stored(log_engine, ids) == (0, 0)
    big: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: big.append(
            httpx.post(f"{quiet.url}/invocations", json=split_body(rows(1000)), headers=HEADERS, timeout=60)
        )
    )
    slow.start()
    time.sleep(0.3)
    assert quiet.process is not None
    children = psutil.Process(quiet.process.pid).children(recursive=True)
    assert quiet.stop(signal.SIGTERM) == 0
    slow.join()
    assert big[0].status_code == 200 and len(big[0].json()["predictions"]) == 1000
    assert stored(log_engine, ids) == (5, 10)
    assert (
        count(
            log_engine,
            f"SELECT count(*) FROM inference_requests WHERE request_id = '{big[0].headers['X-Request-ID']}'",
        )
        == 1
    )
    assert not list(quiet.spool.glob("*.jsonl"))
    assert not any(pid_alive(pid) for pid in quiet.backend_pids())
    _, alive = psutil.wait_procs(children, timeout=30)  # The backend and the body-check worker.
    assert not alive, [child.cmdline()[:3] for child in alive]


def test_a_killed_proxy_leaves_no_child_behind(
    served: str, log_db: str, start_proxy: Callable[..., Proxy]
) -> None:
    proxy = start_proxy(served, log_db)
    large = httpx.post(f"{proxy.url}/invocations", json=split_body(rows(500)), headers=HEADERS, timeout=60)
    assert large.status_code == 200  # Over 64 KiB: checked in the worker process.
    assert proxy.process is not None
    children = psutil.Process(proxy.process.pid).children(recursive=True)
    assert any("spawn_main" in " ".join(child.cmdline()) for child in children)
    proxy.stop(signal.SIGKILL)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [child.cmdline()[:3] for child in alive]


@pytest.mark.integration
def test_bad_settings_stop_the_command_with_one_line(tmp_path: Path) -> None:
    for args, env, expected in [
        (["--model", "attrition", "--port", "0"], {}, "port: Input should be greater than or equal to 1"),
        (["--model", "no-such-model"], {}, "no-such-model@production"),
        (["--model", "attrition"], {"API_KEYS": "short"}, "API_KEYS: entry 1 has no id"),
        (["--model", "attrition"], {"DATABASE_URL": "nonsense"}, "DATABASE_URL: not a database URL"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "serving", *args],
            cwd=tmp_path, env=subprocess_env(**env), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr
        assert "Traceback" not in done.stderr


def test_mlproject_serve_entry_point(served: str, log_db: str, tmp_path: Path) -> None:
    port = free_port()
    env = subprocess_env(DATABASE_URL=log_db, SERVING_SPOOL_DIR=str(tmp_path / "spool"))
    command = [
        sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local", "-e", "serve",
        "-P", f"model={served}", "-P", f"port={port}", "--experiment-name", "serving",
    ]  # fmt: skip
    with (tmp_path / "run.log").open("wb") as log:
        run = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(
            lambda: _answers(f"http://127.0.0.1:{port}/ready"), seconds=180, message="`mlflow run -e serve`"
        )
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json=BODY, headers=HEADERS, timeout=30)
        assert answer.status_code == 200
        children = psutil.Process(run.pid).children(recursive=True)
        assert len(children) >= 2  # The proxy and its backend.
        run.send_signal(signal.SIGTERM)  # To `mlflow run` alone, as a supervisor stopping the job does.
        run.wait(60)
        _, alive = psutil.wait_procs(children, timeout=60)
        assert not alive, [child.cmdline()[:4] for child in alive]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    assert not _answers(f"http://127.0.0.1:{port}/ready")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_proxy_needs_only_select_and_insert(
    served: str, start_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    role = f"scoring_{uuid.uuid4().hex[:8]}"
    with fresh_database() as owner_url:
        engine = make_engine(owner_url)
        # The schema is the owner's job, with the README's command; the proxy only finds it at head.
        done = subprocess.run(
            [sys.executable, "-m", "logstore", "migrate"], env=subprocess_env(DATABASE_URL=owner_url),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0 and "at the latest schema" in done.stdout, done.stderr
        database = owner_url.rsplit("/", 1)[1]
        admin_sql(f"CREATE ROLE {role} LOGIN")

        def grant(*statements: str) -> None:
            with engine.begin() as connection:
                for statement in statements:
                    connection.execute(text(statement))

        try:
            grant(
                f'GRANT CONNECT ON DATABASE "{database}" TO {role}',
                f"GRANT USAGE ON SCHEMA public TO {role}",
                f"GRANT SELECT ON alembic_version, entities TO {role}",
                f"GRANT SELECT ON inference_requests, inference_predictions, inference_outcomes TO {role}",
            )
            limited_url = make_url(owner_url).set(username=role, password=None).render_as_string(False)
            proxy = start_proxy(served, limited_url)
            answer = httpx.post(f"{proxy.url}/invocations", json=BODY, headers=HEADERS, timeout=30)
            assert answer.status_code == 200, answer.text
            request_id = answer.headers["x-request-id"]
            # Without INSERT the rows wait in the spool: nothing is set aside as if it were bad content.
            wait_for(
                lambda: "permission denied" in proxy.log(), message="the writer to meet the missing grant"
            )
            assert stored(engine, [request_id]) == (0, 0)
            assert not (proxy.spool / "rejected.ndjson").exists()
            grant(f"GRANT INSERT ON inference_requests, inference_predictions TO {role}")
            wait_for(lambda: stored(engine, [request_id]) == (1, 2), message="rows once INSERT is granted")
            listed = httpx.get(f"{proxy.url}/predictions/{request_id}", headers=HEADERS, timeout=30)
            assert listed.status_code == 200 and len(listed.json()["predictions"]) == 2
            assert proxy.stop() == 0
        finally:
            engine.dispose()
    admin_sql(f"DROP ROLE IF EXISTS {role}")  # Its grants went with the database.
