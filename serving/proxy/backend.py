"""The backend: `mlflow models serve` on one model version, as a child process on an internal port."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import aiohttp
import mlflow

from serving.errors import Unavailable
from serving.proxy.processes import nice_child
from serving.registry import ModelInfo

logger = logging.getLogger(__name__)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def with_own_bin() -> str:
    """PATH with this interpreter's directory first, where `mlflow models serve` finds `uvicorn`."""
    # An environment that was not activated (`venv/bin/python -m serving`) lacks it otherwise.
    return os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])


def access_log_env() -> dict[str, str]:
    """uvicorn's per-request access line off, unless `UVICORN_ACCESS_LOG` is set: the proxy logs requests."""
    # One log line per request costs the backend's event loop about 0.5 ms on a 2-core machine.
    return {"UVICORN_ACCESS_LOG": os.environ.get("UVICORN_ACCESS_LOG", "false")}


@dataclass
class Backend:
    """One running `mlflow models serve` and the requests it is answering."""

    info: ModelInfo
    url: str
    process: subprocess.Popen[bytes]
    inflight: int = 0

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None


def spawn(info: ModelInfo, *, workers: int, timeout_seconds: float, niceness: int = 0) -> Backend:
    """Start `mlflow models serve` on one version (call from the event loop's thread), `niceness` lower."""
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "models", "serve",
        "-m", f"models:/{info.name}/{info.version}",
        "--env-manager", "local",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", str(workers),
        "--timeout", str(max(1, round(timeout_seconds))),
    ]  # fmt: skip
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(),
        "PATH": with_own_bin(),
        **access_log_env(),
    }
    # Own session: a Ctrl-C meant for the serving command must not stop the backend mid-request.
    lowered = functools.partial(nice_child, niceness)
    process = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=lowered)  # noqa: PLW1509
    logger.info("backend: version %s starting on port %d (pid %d)", info.version, port, process.pid)
    return Backend(info=info, url=f"http://127.0.0.1:{port}", process=process)


async def wait_ready(backend: Backend, client: aiohttp.ClientSession, *, seconds: float) -> None:
    """Wait until the backend answers `/ping`; raise `Unavailable` if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not backend.alive():
            raise Unavailable(
                f"backend for version {backend.info.version} exited with code {backend.process.returncode}"
            )
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with client.get(f"{backend.url}/ping", timeout=aiohttp.ClientTimeout(total=2.0)) as answer:
                if answer.status == 200:
                    logger.info("backend: version %s ready at %s", backend.info.version, backend.url)
                    return
        await asyncio.sleep(0.25)
    raise Unavailable(
        f"backend for version {backend.info.version} did not answer /ping within {seconds:.0f} s"
    )


def _group_alive(backend: Backend) -> bool:
    backend.process.poll()  # Reap the leader, so that only live members count.
    try:
        os.killpg(backend.process.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def stop(backend: Backend, *, grace_seconds: float = 20.0) -> None:
    """SIGTERM the backend's process group, then SIGKILL what is left after the grace period."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(backend.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while _group_alive(backend) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if _group_alive(backend):
        logger.warning("backend: version %s ignored SIGTERM; killing it", backend.info.version)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(backend.process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(backend.process.wait, 5)
    logger.info("backend: version %s stopped", backend.info.version)
