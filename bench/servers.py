"""The servers under test, each a real process on loopback: `mlflow models serve` and `python -m serving`."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from serving.backend import access_log_env, free_port, with_own_bin


class ServerError(RuntimeError):
    """A server did not start."""


@dataclass
class Server:
    """One server process (and the processes it starts), its URL and its log file."""

    name: str
    url: str
    ready_path: str
    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        """Start the process in its own session; `wait_ready` waits for it."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        return self

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

    def stop(self, seconds: float = 60) -> None:
        """SIGTERM the server's process group; SIGKILL what is left after `seconds`."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


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
    return Server(name, f"http://127.0.0.1:{port}", "/ready", command, workdir / f"{name}.log", settings)


def backend_url(server: Server) -> str:
    """The URL of the `mlflow models serve` a proxy started, as its log reports it."""
    found = re.findall(r"backend: version \d+ ready at (http://127\.0\.0\.1:\d+)", server.tail(1_000_000))
    if not found:
        raise ServerError(f"{server.name} did not report its backend:\n{server.tail()}")
    return str(found[-1])
