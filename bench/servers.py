"""The servers under test, each a real process on loopback: `mlflow models serve` and `python -m serving`.

One harness for the benchmark, the fault run and the tests: a proxy's backend (its pid and URL) is
read from the state file the proxy keeps in its spool directory, never from its log lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from serving.proxy.backend import access_log_env, free_port, with_own_bin


class ServerError(RuntimeError):
    """A server did not start."""


@dataclass(frozen=True)
class BackendState:
    """Which `mlflow models serve` a proxy routes to now, and every one it started."""

    version: int | None
    url: str | None
    pid: int | None
    started_pids: list[int]


@dataclass
class Server:
    """One server process (and the processes it starts), its URL and its log file."""

    name: str
    url: str
    ready_path: str
    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    state_path: Path | None = None  # A proxy's `backend.json`.
    cwd: Path | None = None
    inherit_env: bool = True  # False: `env` is the whole environment.
    process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.url.rsplit(":", 1)[1])

    def start(self) -> Server:
        """Start the process in its own session; `wait_ready` waits for it."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env={**os.environ, **self.env} if self.inherit_env else self.env,
                stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.cwd,
            )  # fmt: skip
        return self

    def backend(self) -> BackendState:
        """A proxy's backend now, as the proxy's state file says."""
        if self.state_path is None or not self.state_path.exists():
            raise ServerError(f"{self.name} has published no backend yet:\n{self.tail()}")
        return BackendState(**json.loads(self.state_path.read_text(encoding="utf-8")))

    def wait_ready(self, seconds: float = 300) -> None:
        """Wait until the ready path answers 200."""
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}{self.ready_path}", timeout=5).status_code == 200:
                    return
            time.sleep(0.25)
        raise ServerError(f"{self.name} was not ready within {seconds:.0f} s:\n{self.tail()}")

    def wait_shadowing(self, seconds: float = 300, state: str = "shadow.json") -> None:
        """Wait until a proxy has its challenger's backend up (`state`: `canary.json` for its canary's)."""
        assert self.state_path is not None
        shadow = self.state_path.with_name(state)
        deadline = time.monotonic() + seconds
        while not (shadow.exists() and json.loads(shadow.read_text(encoding="utf-8"))["url"]):
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name}'s challenger not up within {seconds:.0f} s:\n{self.tail()}")
            time.sleep(0.25)

    def tail(self, chars: int = 3000) -> str:
        """The end of the server's log."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def rss_bytes(self) -> int:
        """Resident memory of the process and all its descendants."""
        if self.process is None:
            return 0
        try:
            root = psutil.Process(self.process.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += member.memory_info().rss
        return total

    def stop(self, sig: int = signal.SIGTERM, seconds: float = 60, *, group: bool = True) -> int | None:
        """Send `sig` to the server (its process group unless `group` is false) and wait for its exit code.

        What is left after `seconds` is SIGKILLed.
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(self.process.pid, sig)
                else:
                    self.process.send_signal(sig)
            try:
                self.process.wait(seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


def mlflow_server(name: str, model_uri: str, workdir: Path, *, workers: int) -> Server:
    """`mlflow models serve` on one model, configured as the proxy runs its backend."""
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    env = {"PATH": with_own_bin(), **access_log_env()}
    return Server(name, f"http://127.0.0.1:{port}", "/ping", command, workdir / f"{name}.log", env)


def proxy(
    name: str,
    model: str,
    workdir: Path,
    *,
    database_url: str,
    log_requests: bool,
    workers: int,
    env: dict[str, str] | None = None,
) -> Server:
    """`python -m serving` following the model's `@production`, with its backend; `env` adds settings."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "serving",
        "--model",
        model,
        "--alias",
        "production",
        "--port",
        str(port),
    ]
    settings = {
        "DATABASE_URL": database_url,
        "SERVING_SPOOL_DIR": str(workdir / f"{name}-spool"),
        "SERVING_LOG_REQUESTS": str(log_requests).lower(),
        "SERVING_BACKEND_WORKERS": str(workers),
        **(env or {}),
    }
    spool = Path(settings["SERVING_SPOOL_DIR"])
    return Server(
        name, f"http://127.0.0.1:{port}", "/ready", command, workdir / f"{name}.log", settings,
        state_path=spool / "backend.json",
    )  # fmt: skip


def backend_url(server: Server) -> str:
    """The URL of the `mlflow models serve` a proxy routes to now."""
    url = server.backend().url
    if url is None:
        raise ServerError(f"{server.name} has no backend running:\n{server.tail()}")
    return url


@dataclass
class SparkCluster:
    """A Spark standalone cluster on loopback: a master and its workers, each its own JVM."""

    master: Server
    workers: list[Server]
    port: int
    workdir: Path  # Logs, and `work/<app>/<executor>/stderr` of every executor.

    @property
    def url(self) -> str:
        """What `--master` takes."""
        return f"spark://127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        """The master's own account: workers, running and completed applications."""
        found: dict[str, Any] = httpx.get(f"{self.master.url}/json/", timeout=10).json()
        return found

    @property
    def servers(self) -> list[Server]:
        """Workers first, then the master."""
        return [*self.workers, self.master]

    def stop(self) -> None:
        """Workers first, then the master."""
        for server in self.servers:
            server.stop()


def spark_cluster(workdir: Path, *, workers: int = 2, cores: int = 1, memory: str = "2g") -> SparkCluster:
    """Start a standalone master and `workers` workers of `cores` cores each from PySpark; wait for them.

    `spark-class` ships in PySpark's `bin/`; every executor runs this interpreter (`PYSPARK_PYTHON`).
    """
    import pyspark  # The Spark extra: only callers that start a cluster need it.

    home = Path(pyspark.__file__).parent
    workdir.mkdir(parents=True, exist_ok=True)
    port, ui = free_port(), free_port()
    env = {
        "SPARK_HOME": str(home), "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(workdir), "SPARK_WORKER_DIR": str(workdir / "work"),
    }  # fmt: skip
    launch = [str(home / "bin" / "spark-class")]
    master = Server(
        "spark-master", f"http://127.0.0.1:{ui}", "/json/",
        [*launch, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(ui)],
        workdir / "spark-master.log", env,
    )  # fmt: skip
    master.start().wait_ready(120)
    started = []
    for index in range(workers):
        worker_ui = free_port()
        command = [
            *launch, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", str(cores),
            "--memory", memory, "--webui-port", str(worker_ui), f"spark://127.0.0.1:{port}",
        ]  # fmt: skip
        worker = Server(
            f"spark-worker-{index}", f"http://127.0.0.1:{worker_ui}", "/json/", command,
            workdir / f"spark-worker-{index}.log", env,
        )  # fmt: skip
        started.append(worker.start())
    cluster = SparkCluster(master, started, port, workdir)
    deadline = time.monotonic() + 120
    while sum(worker["state"] == "ALIVE" for worker in cluster.state()["workers"]) < workers:
        if time.monotonic() > deadline:
            cluster.stop()
            raise ServerError(f"{workers} Spark workers did not register:\n{started[-1].tail()}")
        time.sleep(0.5)
    return cluster
