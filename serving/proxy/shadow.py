"""Shadow scoring: every answered request is scored again by the challenger, after its answer has left.

The challenger is the version an alias names (`SERVING_SHADOW`, e.g. `staging`), run as its own
`mlflow models serve` and followed like the served version. A bounded queue sits between the answer
and the shadow call: when it is full the request is not shadowed (counted), so a slow or dead
challenger never delays or fails a client. Answers are spooled as shadow records for the log store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow.tracking import MlflowClient
from prometheus_client import Counter

from logstore.errors import LogStoreError
from logstore.records import ShadowCall, shadow_record
from logstore.spool import Spool
from serving.errors import ServingError
from serving.proxy.batching import Batcher, mergeable
from serving.proxy.forwarder import Forwarder
from serving.proxy.metrics import Metrics
from serving.proxy.supervisor import Supervisor
from serving.settings import ServingSettings

logger = logging.getLogger(__name__)
STATE_FILE = "shadow.json"  # In the spool directory, beside the served backend's `backend.json`.


@dataclass(frozen=True)
class ShadowJob:
    """A request the served version answered, to be scored again."""

    request_id: str
    body: bytes
    content_type: str
    payload: dict[str, Any] | None


class _NoBatchEvents:
    """The shadow's merged calls stay out of the served version's batching metrics."""

    def batched(self, *, requests: int, rows: int, waits: Sequence[float]) -> None:
        """Not counted."""

    def unmerged(self) -> None:
        """Not counted."""


class Shadow:
    """The challenger's backend, the queue in front of it, and the workers that call it."""

    def __init__(
        self,
        settings: ServingSettings,
        *,
        client: MlflowClient,
        forwarder: Forwarder,
        metrics: Metrics,
        spool: Spool,
        alias: str | None = None,
        borrowed: Supervisor | None = None,
        calls: Counter | None = None,
        batcher: Batcher | None = None,
    ) -> None:
        self.settings = settings
        # `borrowed`: another part's backend (the canary's mirror calls production's), never started
        # or stopped here; else the version `alias` names, run and followed here.
        self._own = borrowed is None
        if borrowed is None:
            followed = settings.model_copy(update={"alias": alias, "stage": None})
            borrowed = Supervisor(
                followed, client=client, forwarder=forwarder, metrics=metrics, state_file=STATE_FILE,
                keep_without_target=False, niceness=settings.shadow_nice,
            )  # fmt: skip
        self.supervisor = borrowed
        self._calls = metrics.shadow_calls if calls is None else calls
        self.queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=settings.shadow_queue)
        self._forwarder = forwarder
        self._metrics = metrics
        self._spool = spool
        # A borrowed backend's calls go through its lender's batcher (`batcher`): merged into the
        # lender's own calls, not a second stream of calls waiting for the same worker.
        self._batcher: Batcher | None = batcher
        self._own_batcher = batcher is None
        if settings.batching and batcher is None:
            self._batcher = Batcher(
                forwarder, slots=settings.backend_workers, max_rows=settings.batch_max_rows,
                max_wait_seconds=settings.batch_max_wait_ms / 1000, events=_NoBatchEvents(),
            )  # fmt: skip
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Follow the alias (a challenger that does not exist yet starts once it does); start the workers."""
        if self._own:
            self.supervisor.follow()
        self.start_workers()

    def start_workers(self) -> None:
        """Start taking jobs off the queue."""
        self._workers = [
            asyncio.create_task(self._work(), name=f"shadow-{n}") for n in range(self.settings.shadow_workers)
        ]

    def offer(self, job: ShadowJob) -> None:
        """Queue a job; when the queue is full it is dropped and counted, never waited for."""
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self._calls.labels("dropped").inc()

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self._call(job)
            except Exception:
                logger.exception("shadow: request %s: unexpected error", job.request_id)
            finally:
                self.queue.task_done()

    async def _call(self, job: ShadowJob) -> None:
        backend = self.supervisor.backend
        if backend is None:
            self._calls.labels("dropped").inc()  # No challenger runs (yet).
            return
        started = time.perf_counter()
        error: str | None = None
        response: str | None = None
        try:
            rows = (
                mergeable(job.payload, job.content_type)
                if self._batcher is not None and job.payload is not None
                else None
            )
            if rows is not None and self._batcher is not None:
                reply = (await self._batcher.submit(backend, job.body, job.content_type, rows)).reply
            else:
                reply = (await self._forwarder.forward(backend, job.body, job.content_type))[0]
            if reply.status_code == 200:
                response = reply.content.decode("utf-8", errors="replace")
            else:
                error = f"the challenger answered {reply.status_code}: {reply.content[:300]!r}"
        except ServingError as exc:
            error = exc.message
        seconds = time.perf_counter() - started
        if self._own:
            self._metrics.shadow_latency.observe(seconds)
        self._calls.labels("failed" if error else "ok").inc()
        call = ShadowCall(
            request_id=job.request_id, model_name=self.settings.model, model_version=backend.info.version,
            shadowed_at=datetime.now(UTC).isoformat(), latency_ms=round(seconds * 1000, 3), error=error,
            response=response,
        )  # fmt: skip
        try:
            self._spool.append(shadow_record(call))
        except LogStoreError as exc:  # A full spool keeps its room for the answers clients got.
            logger.warning("shadow: request %s not logged: %s", job.request_id, exc.message)

    async def close(self) -> None:
        """Stop the workers and their calls (no client waits on them) and the challenger's backends."""
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._batcher is not None and self._own_batcher:
            await self._batcher.close(cancel=True)  # A hung challenger does not hold up a shutdown.
        if self._own:
            await self.supervisor.close()
