"""A team's deployment, for real: `mlflow server` on PostgreSQL with proxied artifacts, replicas, nginx."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bench.servers import Server
from serving.proxy.backend import free_port
from tests.conftest import REPO, fresh_database, subprocess_env
from tests.serving.conftest import Proxy, pid_alive

NGINX_CONF = REPO / "serving" / "deploy" / "nginx.conf"
MODEL = "attrition"


@dataclass(frozen=True)
class Team:
    """What the team's machines run: the tracking server, the log database and the commands' environment."""

    tracking_uri: str
    artifacts: Path
    log_db: str
    workdir: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every command of the project gets: only the tracking server's address."""
        return subprocess_env(MLFLOW_TRACKING_URI=self.tracking_uri, DATABASE_URL=self.log_db, **extra)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """One of the project's commands, as a user runs it on another machine than the server."""
        return subprocess.run(
            [sys.executable, *args], env=self.env(), cwd=self.workdir, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def client(self) -> MlflowClient:
        """A client of the tracking server, over HTTP."""
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)


def nginx_config(listen: int, replicas: list[int]) -> str:
    """The shipped config with this test's ports."""
    text = NGINX_CONF.read_text()
    servers = "".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;\n" for port in replicas)
    text, found = re.subn(r"(        server 127\.0\.0\.1:\d+ [^\n]*\n)+", servers, text)
    assert found == 1, "the shipped nginx.conf lists its replicas as `server 127.0.0.1:PORT ...;` lines"
    return text.replace("listen 127.0.0.1:8000;", f"listen 127.0.0.1:{listen};")


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`mlflow server` with a PostgreSQL backend store and proxied artifacts on local disk."""
    home = tmp_path_factory.mktemp("tracking")
    artifacts = home / "artifacts"
    with fresh_database() as backend_url:
        port = free_port()
        server = Server(
            name="mlflow-server", url=f"http://127.0.0.1:{port}", ready_path="/health",
            command=[
                sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_url,
                "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port),
                "--workers", "2",
            ],
            log_path=home / "mlflow-server.log", env=subprocess_env(), cwd=home, inherit_env=False,
        )  # fmt: skip
        server.start()
        try:
            server.wait_ready(180)
            yield server.url, artifacts
        finally:
            server.stop(signal.SIGTERM, 30)


@pytest.fixture(scope="module")
def team(tracking_server: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """The tracking server, a log database of its own and a working directory with nothing in it."""
    uri, artifacts = tracking_server
    with fresh_database() as log_db:
        yield Team(uri, artifacts, log_db, tmp_path_factory.mktemp("team"))


@pytest.fixture(scope="module")
def trained(team: Team) -> str:
    """The attrition model trained and promoted through the tracking server; its version."""
    done = team.run("-m", "training", "--config", MODEL, "--trials", "2", "--cv-folds", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    version = re.search(r"registered attrition version (\d+)", done.stdout)
    assert version is not None, done.stdout
    done = team.run(
        "-m", "registry_scripts", "promote", "--model", MODEL, "--version", version[1], "--to", "production"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return version[1]


@dataclass
class Balanced:
    """Replicas behind nginx: the URL clients call and each replica."""

    url: str
    replicas: list[Proxy]
    nginx: Server

    def by_address(self) -> dict[str, Proxy]:
        """Each replica by the `host:port` nginx names in X-Served-By."""
        return {f"127.0.0.1:{replica.port}": replica for replica in self.replicas}


@pytest.fixture(scope="module")
def balanced(team: Team, trained: str) -> Iterator[Balanced]:
    """Two replicas started together on one fresh log database, each with its own spool, behind nginx."""
    replicas = [
        Proxy.create(team.workdir, MODEL, team.log_db, MLFLOW_TRACKING_URI=team.tracking_uri)
        for _ in range(2)
    ]
    for replica in replicas:
        replica.start()  # Together: their start-up migrations race on the fresh database.
    prefix = team.workdir / "nginx"
    prefix.mkdir()
    listen = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(listen, [replica.port for replica in replicas]))
    globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    nginx = Server(
        name="nginx", url=f"http://127.0.0.1:{listen}", ready_path="/ready",
        command=[nginx_binary(), "-p", str(prefix), "-c", str(conf), "-g", globals_],
        log_path=prefix / "nginx.log",
    )  # fmt: skip
    try:
        for replica in replicas:
            replica.wait_ready(240)
        nginx.start()
        nginx.wait_ready(30)
        yield Balanced(nginx.url, replicas, nginx)
    finally:
        nginx.stop(signal.SIGTERM, 10)
        for replica in replicas:
            if replica.process is not None and replica.process.poll() is None:
                replica.stop(signal.SIGTERM, 60)
            for pid in replica.backend_pids():
                if pid_alive(pid):
                    os.killpg(pid, signal.SIGKILL)


def nginx_binary() -> str:
    """Debian's nginx (`.ci/run` installs it)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        pytest.fail("nginx is not installed: `apt-get install nginx-light` (.ci/run does)")
    return found
