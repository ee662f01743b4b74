"""The serving process's moving parts: the backend it routes to, the log spool, and the registry follower."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import aiohttp
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from logstore import database
from logstore.errors import SpoolFull, SpoolWriteFailed, StoreUnavailable
from logstore.records import spooled_body
from logstore.spool import Spool
from logstore.writer import LogWriter
from serving import backend as backends
from serving.auth import ApiKey
from serving.backend import Backend
from serving.checks import Checker
from serving.errors import BackendTimeout, ServingError, Unavailable
from serving.metrics import Metrics
from serving.registry import describe, resolve
from serving.settings import ServingSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")
READY_DATABASE_SECONDS = 5.0


@dataclass(frozen=True)
class Reply:
    """A backend's answer to `/invocations`."""

    status_code: int
    content: bytes


class Runtime:
    """Routes requests to the current backend, spools their log records, and follows the registry."""

    def __init__(
        self,
        settings: ServingSettings,
        *,
        engine: Engine,
        spool: Spool,
        writer: LogWriter,
        keys: list[ApiKey],
        client: MlflowClient,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine = engine
        self.spool = spool
        self.writer = writer
        self.keys = keys
        self.client = client
        self.backend: Backend | None = None
        self.not_ready: str | None = "starting"
        self.dropped_records = 0
        self._version: int | None = None
        self._session: aiohttp.ClientSession | None = None
        self._follower: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        # Reads of the log store get their own threads: a hanging database must not starve the
        # registry follower, which shares asyncio's default executor.
        self._database = ThreadPoolExecutor(max_workers=4, thread_name_prefix="log-store")
        self._ping: asyncio.Future[None] | None = None
        self.checker = Checker()

    @property
    def _http(self) -> aiohttp.ClientSession:
        # aiohttp, not httpx, on this hop: measured here, it costs a fifth of httpx's CPU per request.
        if self._session is None:  # Created on first use: a session belongs to the running event loop.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=5.0, sock_read=self.settings.backend_timeout_seconds
                ),
                auto_decompress=False,
            )
        return self._session

    async def start(self) -> None:
        """Start the writer and the backend on the version the registry names, then follow it."""
        self.writer.start()
        await self.checker.start()
        self._version = await asyncio.to_thread(self._resolve)
        self.backend = await self._launch(self._version)
        self.not_ready = None
        self._follower = asyncio.create_task(self._follow(), name="registry-follower")

    def _resolve(self) -> int:
        return resolve(self.client, self.settings.model, alias=self.settings.alias, stage=self.settings.stage)

    async def _launch(self, version: int) -> Backend:
        info = await asyncio.to_thread(
            describe, self.client, self.settings.model, version, self.settings.target
        )
        backend = backends.spawn(
            info, workers=self.settings.backend_workers, timeout_seconds=self.settings.backend_timeout_seconds
        )
        try:
            await backends.wait_ready(backend, self._http, seconds=self.settings.backend_start_seconds)
        except BaseException:
            await backends.stop(backend)
            raise
        return backend

    async def _follow(self) -> None:
        while True:
            # A failed forward wakes the follower at once, so a dead backend is restarted at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)
            self._wake.clear()
            try:
                await self.check()
            except ServingError as exc:
                logger.warning("follower: %s", exc.message)
            except Exception:
                logger.exception("follower: unexpected error; still following")

    async def check(self) -> None:
        """Restart a dead backend; move to the version the registry names if it changed."""
        current = self.backend
        if current is not None and not current.alive():
            self.backend = None
            self.not_ready = f"backend for version {current.info.version} exited; restarting it"
            logger.warning("follower: %s", self.not_ready)
            self.metrics.restarts.inc()
            await backends.stop(current)
        wanted: int | None
        try:
            wanted = await asyncio.to_thread(self._resolve)
        except ServingError as exc:
            logger.warning("follower: cannot read the registry (%s); serving on", exc.message)
            wanted = self._version
        if wanted is None:
            return
        if self.backend is None:
            self._version = wanted
            self.backend = await self._launch(wanted)
            self.not_ready = None
        elif wanted != self.backend.info.version:
            await self.switch(wanted)

    async def switch(self, version: int) -> None:
        """Start a backend on `version`, route new requests to it, retire the old one when idle."""
        old = self.backend
        logger.info("follower: %s%s now names version %s", self.settings.model, self.settings.target, version)
        new = await self._launch(version)
        self._version = version
        self.backend = new
        self.metrics.switches.inc()
        if old is not None:
            logger.info("follower: switched from version %s to %s", old.info.version, version)
            task = asyncio.create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, old: Backend) -> None:
        deadline = time.monotonic() + self.settings.drain_seconds
        while old.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await backends.stop(old)

    async def forward(self, body: bytes, content_type: str) -> tuple[Reply, Backend, float]:
        """Send a body to the current backend's `/invocations`: its answer, the backend, upstream ms."""
        backend = self.backend
        if backend is None:
            raise Unavailable(f"the model server is not running: {self.not_ready}")
        if self.settings.log_requests and self.settings.spool_full == "reject" and self.spool.full():
            raise SpoolFull()
        backend.inflight += 1
        started = time.perf_counter()
        try:
            async with self._http.post(
                f"{backend.url}/invocations", data=body, headers={"content-type": content_type}
            ) as answer:
                reply = Reply(answer.status, await answer.read())
        except aiohttp.SocketTimeoutError as exc:
            raise BackendTimeout(
                f"the model did not answer within {self.settings.backend_timeout_seconds:g} s"
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._wake.set()
            raise Unavailable("the model server is not answering; retry shortly") from exc
        finally:
            backend.inflight -= 1
        return reply, backend, (time.perf_counter() - started) * 1000

    async def ping_backend(self) -> str | None:
        """None if the backend answers `/ping`, else why not."""
        backend = self.backend
        if backend is None:
            return f"model server: {self.not_ready}"
        try:
            async with self._http.get(
                f"{backend.url}/ping", timeout=aiohttp.ClientTimeout(total=2.0)
            ) as answer:
                status = answer.status
        except (aiohttp.ClientError, TimeoutError):
            return f"model server for version {backend.info.version} does not answer /ping"
        return None if status == 200 else f"model server answered /ping with {status}"

    async def on_database(self, call: Callable[..., T], **kwargs: Any) -> T:
        """Run a log-store read in its own threads; 503 when it fails or takes too long."""
        future = asyncio.get_running_loop().run_in_executor(
            self._database, partial(call, self.engine, **kwargs)
        )
        try:
            return await asyncio.wait_for(future, self.settings.database_timeout_seconds)
        except TimeoutError as exc:
            raise Unavailable(
                f"the log store did not answer within {self.settings.database_timeout_seconds:g} s"
            ) from exc
        except SQLAlchemyError as exc:
            raise Unavailable(f"the log store is unreachable: {database.first_line(exc)}") from exc

    async def ping_database(self) -> str | None:
        """None if the log store answers, else why not; never more than one check waits on it."""
        if self._ping is None or self._ping.done():
            self._ping = asyncio.get_running_loop().run_in_executor(
                self._database, database.ping, self.engine
            )
            self._ping.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            await asyncio.wait_for(asyncio.shield(self._ping), READY_DATABASE_SECONDS)
        except TimeoutError:
            return f"log store: no answer within {READY_DATABASE_SECONDS:g} s"
        except StoreUnavailable as exc:
            return exc.message
        return None

    def writer_problem(self) -> str | None:
        """None if the log writer runs, else why not."""
        if not self.settings.log_requests or self.writer.running:
            return None
        return f"log writer: down ({self.writer.crashed or 'not running'}); records wait in the spool"

    def log(
        self,
        *,
        request_id: str,
        client_request_id: uuid.UUID | None,
        received_at: datetime,
        key_id: str | None,
        endpoint: str,
        backend: Backend | None,
        status_code: int,
        total_ms: float,
        upstream_ms: float | None,
        content_type: str,
        body: bytes,
        response: bytes | None,
        error: str | None,
    ) -> None:
        """Spool one exchange for the log store; `SpoolFull` under the reject policy."""
        if not self.settings.log_requests:
            return
        served = backend or self.backend
        info = served.info if served else None
        record: dict[str, Any] = {
            "request": {
                "request_id": request_id,
                "client_request_id": None if client_request_id is None else str(client_request_id),
                "received_at": received_at.isoformat(),
                "key_id": key_id,
                "endpoint": endpoint,
                "model_name": self.settings.model,
                "model_version": info.version if info else None,
                "model_target": self.settings.target,
                "status_code": status_code,
                "total_ms": round(total_ms, 3),
                "upstream_ms": None if upstream_ms is None else round(upstream_ms, 3),
                "error": error,
            },
            "content_type": content_type,
            **spooled_body(content_type, body),
            "response": None if response is None else response.decode("utf-8", errors="replace"),
            "id_column": info.id_column if info else None,
            "columns": info.columns if info else [],
        }
        try:
            self.spool.append(record)
        except (SpoolFull, SpoolWriteFailed) as exc:
            if self.settings.spool_full == "reject":
                raise
            if isinstance(exc, SpoolWriteFailed):
                logger.error("log: %s; the record is dropped (SERVING_SPOOL_FULL=drop)", exc.message)  # noqa: TRY400 - the message says it all; no traceback
            self.dropped_records += 1
            self.metrics.log_dropped.inc()
            if self.dropped_records == 1 or self.dropped_records % 1000 == 0:
                logger.warning("log: spool full, %d record(s) dropped so far", self.dropped_records)

    async def close(self) -> None:
        """Stop following, stop every backend, write the queued rows, release the spool."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        for task in list(self._retiring):
            await task
        if self.backend is not None:
            await backends.stop(self.backend)
            self.backend = None
        if self._session is not None:
            await self._session.close()
        self.checker.close()
        await asyncio.to_thread(self.writer.close)
        self.spool.close()
        self._database.shutdown(wait=False, cancel_futures=True)
