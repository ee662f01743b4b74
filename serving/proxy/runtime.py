"""The serving process's parts, put together: supervision, forwarding, the body checker and the log.

The routes and the scoring service reach every part through one `Runtime`; each part has one job:
`Supervisor` (which backend runs), `Forwarder` (the HTTP hop to it), `Checker` (bodies against the
signature), the spool and its writer (the log), and the log store's reads.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from mlflow.tracking import MlflowClient
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from logstore import database
from logstore.errors import SpoolFull, SpoolWriteFailed, StoreUnavailable
from logstore.records import Exchange, spool_record
from logstore.spool import Spool
from logstore.writer import LogWriter
from serving.errors import Unavailable
from serving.proxy.auth import ApiKey
from serving.proxy.backend import Backend
from serving.proxy.batching import Batcher, Call, mergeable
from serving.proxy.canary import Canary
from serving.proxy.checks import Checker
from serving.proxy.forwarder import BackendUnreachable, Forwarder
from serving.proxy.metrics import Metrics
from serving.proxy.shadow import Shadow, ShadowJob
from serving.proxy.supervisor import Supervisor
from serving.settings import ServingSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")
READY_DATABASE_SECONDS = 5.0


class Runtime:
    """The parts of one serving process, and the few things that need more than one of them."""

    def __init__(
        self, settings: ServingSettings, *, engine: Engine, keys: list[ApiKey], client: MlflowClient
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.keys = keys
        self.client = client
        # The spool takes its directory for this process alone (`StoreConfigError` if another has it).
        self.spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes)
        self.metrics = Metrics(spool_bytes=lambda: self.spool.size, spool_records=lambda: self.spool.records)
        self.writer = LogWriter(
            self.spool, engine, flush_seconds=settings.flush_seconds, hmac_key=settings.hmac_key,
            events=self.metrics,
        )  # fmt: skip
        self.forwarder = Forwarder(timeout_seconds=settings.backend_timeout_seconds)
        self.supervisor = Supervisor(settings, client=client, forwarder=self.forwarder, metrics=self.metrics)
        self.checker = Checker()
        self.batcher: Batcher | None = None
        if settings.batching:
            self.batcher = Batcher(
                self.forwarder, slots=settings.backend_workers, max_rows=settings.batch_max_rows,
                max_wait_seconds=settings.batch_max_wait_ms / 1000, events=self.metrics,
            )  # fmt: skip
        self.shadow: Shadow | None = None
        if settings.shadow is not None:
            self.shadow = Shadow(
                settings, alias=settings.shadow, client=client, forwarder=self.forwarder,
                metrics=self.metrics, spool=self.spool,
            )  # fmt: skip
        self.canary = Canary(
            settings, client=client, forwarder=self.forwarder, metrics=self.metrics, spool=self.spool,
            production=self.supervisor, batcher=self.batcher,
        )  # fmt: skip
        self.dropped_records = 0
        # Reads of the log store get their own threads: a hanging database must not starve the
        # registry follower, which shares asyncio's default executor.
        self._database = ThreadPoolExecutor(max_workers=4, thread_name_prefix="log-store")
        self._ping: asyncio.Future[None] | None = None

    @property
    def backend(self) -> Backend | None:
        """The backend new requests go to, if one runs."""
        return self.supervisor.backend

    @backend.setter
    def backend(self, backend: Backend | None) -> None:
        self.supervisor.backend = backend

    @property
    def not_ready(self) -> str | None:
        """Why no backend runs, if none does."""
        return self.supervisor.not_ready

    @not_ready.setter
    def not_ready(self, reason: str | None) -> None:
        self.supervisor.not_ready = reason

    async def start(self) -> None:
        """Start the writer, the checker's worker and the backend, then follow the registry."""
        self.writer.start()
        await self.checker.start()
        await self.supervisor.start()
        if self.shadow is not None:
            await self.shadow.start()
        await self.canary.start()

    def shadow_later(self, job: ShadowJob, answered_by: Backend) -> None:
        """After the answer: the request to the challenger, and a canary-answered one to production."""
        if self.shadow is not None:
            self.shadow.offer(job)
        if answered_by is self.canary.supervisor.backend:
            self.canary.mirror.offer(job)

    async def forward(
        self, body: bytes, content_type: str, payload: dict[str, Any] | None = None
    ) -> tuple[Call, Backend]:
        """Send a body to production's backend or the canary's, through the batcher if it may share a call."""
        backend = self.backend
        if backend is None:
            raise Unavailable(f"the model server is not running: {self.not_ready}")
        if self.settings.log_requests and self.settings.spool_full == "reject" and self.spool.full():
            raise SpoolFull()
        routed = self.canary.active
        rows = mergeable(payload, content_type) if payload is not None and (self.batcher or routed) else None
        canary = self.canary.pick(rows, backend.info.id_column, self.settings.hmac_key) if routed else None
        backend = canary or backend
        try:
            if rows is not None and self.batcher is not None:
                return await self.batcher.submit(backend, body, content_type, rows), backend
            reply, upstream_ms = await self.forwarder.forward(backend, body, content_type)
        except BackendUnreachable:  # A dead backend is restarted at once, not at the next poll.
            (self.supervisor if canary is None else self.canary.supervisor).wake()
            raise
        return Call(reply, upstream_ms, 1, None, None), backend

    async def ping_backend(self) -> str | None:
        """None if the backend answers `/ping`, else why not."""
        backend = self.backend
        if backend is None:
            return f"model server: {self.not_ready}"
        return await self.forwarder.ping(backend)

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
        call: Call | None,
        content_type: str,
        body: bytes,
        response: bytes | None,
        error: str | None,
    ) -> None:
        """Spool one exchange for the log store; `SpoolFull` or `SpoolWriteFailed` under the reject policy."""
        if not self.settings.log_requests:
            return
        served = backend or self.backend
        info = served.info if served else None
        exchange = Exchange(
            request_id=request_id,
            client_request_id=None if client_request_id is None else str(client_request_id),
            received_at=received_at.isoformat(), key_id=key_id, endpoint=endpoint,
            model_name=self.settings.model, model_version=info.version if info else None,
            model_target=info.target if info else self.settings.target, status_code=status_code,
            total_ms=round(total_ms, 3),
            upstream_ms=None if call is None else round(call.upstream_ms, 3), error=error,
            batch_requests=None if call is None else call.batch_requests,
            batch_rows=None if call is None else call.batch_rows,
            queue_ms=None if call is None or call.queue_ms is None else round(call.queue_ms, 3),
        )  # fmt: skip
        record = spool_record(
            exchange, content_type=content_type, body=body, response=response,
            id_column=info.id_column if info else None,
        )  # fmt: skip
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
        if self.shadow is not None:
            await self.shadow.close()
        await self.canary.close()
        if self.batcher is not None:
            await self.batcher.close()
        await self.supervisor.close()
        await self.forwarder.close()
        self.checker.close()
        await asyncio.to_thread(self.writer.close)
        self.spool.close()
        self._database.shutdown(wait=False, cancel_futures=True)
