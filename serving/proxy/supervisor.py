"""Backend supervision: run `mlflow models serve` on the version the registry names, and follow it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable

from mlflow.tracking import MlflowClient

from serving.errors import ServingError
from serving.proxy import backend as backends
from serving.proxy.backend import Backend
from serving.proxy.forwarder import Forwarder
from serving.proxy.metrics import Metrics
from serving.registry import describe, resolve
from serving.settings import ServingSettings

logger = logging.getLogger(__name__)
STATE_FILE = "backend.json"  # In the spool directory: which backend serves now, for operators and harnesses.


class Supervisor:
    """Starts the backend, restarts it when it dies, and moves to a new version without downtime."""

    def __init__(
        self,
        settings: ServingSettings,
        *,
        client: MlflowClient,
        forwarder: Forwarder,
        metrics: Metrics,
        state_file: str = STATE_FILE,
        keep_without_target: bool = True,
        quiet_without_target: bool = False,
        niceness: int = 0,
    ) -> None:
        self.settings = settings
        self.client = client
        self.backend: Backend | None = None
        self.not_ready: str | None = "starting"
        self._forwarder = forwarder
        self._metrics = metrics
        self._version: int | None = None
        self._follower: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._started: list[int] = []
        self.state_path = settings.spool_dir / state_file
        # The served version keeps answering when the registry cannot say what it names (an outage);
        # a shadow stops instead when its alias is gone (its challenger was promoted or dropped).
        self._keep_without_target = keep_without_target
        self._quiet = quiet_without_target  # No target is the usual state (a canary between rollouts).
        # A canary promoted to production: production takes its running backend instead of starting one,
        # so nobody it answered meets the old version while the new one starts.
        self.adopt: Callable[[int], Backend | None] | None = (
            None  # Production: a running backend of a version.
        )
        self.adopted: Callable[[Backend], None] | None = None  # Production: told once it serves from one.
        self.release: Callable[[Backend], Awaitable[bool]] | None = None  # Canary: offered before a stop.
        self.served_elsewhere: Callable[[int], bool] | None = None  # Canary: no second backend of a version.
        self._niceness = niceness

    def _publish(self) -> None:
        """Write which backend serves now (version, URL, pid) and every pid started, atomically."""
        backend = self.backend
        state = {
            "version": backend.info.version if backend else None,
            "url": backend.url if backend else None,
            "pid": backend.process.pid if backend else None,
            "started_pids": self._started,
        }
        partial = self.state_path.with_suffix(".tmp")
        partial.write_text(json.dumps(state), encoding="utf-8")
        os.replace(partial, self.state_path)

    async def start(self) -> None:
        """Start a backend on the version the registry names, then follow the registry."""
        self._version = await asyncio.to_thread(self.resolve)
        self.backend = await self._launch(self._version)
        self.not_ready = None
        self._publish()
        self._follower = asyncio.create_task(self._follow(), name="registry-follower")

    def follow(self) -> None:
        """Follow the registry without a first backend: one starts once the target names a version."""
        self.not_ready = f"waiting for models:/{self.settings.model}{self.settings.target}"
        self._follower = asyncio.create_task(self._follow(), name="registry-follower")
        self._wake.set()

    def wake(self) -> None:
        """Check at once rather than at the next poll (a forward failed: the backend may be dead)."""
        self._wake.set()

    def resolve(self) -> int:
        """The version the followed alias or stage names now (blocking: call in a thread)."""
        return resolve(self.client, self.settings.model, alias=self.settings.alias, stage=self.settings.stage)

    async def _launch(self, version: int) -> Backend:
        info = await asyncio.to_thread(
            describe, self.client, self.settings.model, version, self.settings.target
        )
        settings = self.settings
        backend = backends.spawn(
            info, workers=settings.backend_workers, timeout_seconds=settings.backend_timeout_seconds,
            niceness=self._niceness,
        )  # fmt: skip
        self._started.append(backend.process.pid)
        try:
            await backends.wait_ready(
                backend, self._forwarder.session, seconds=self.settings.backend_start_seconds
            )
        except BaseException:
            await backends.stop(backend)
            raise
        return backend

    async def _follow(self) -> None:
        while True:
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
            self._metrics.restarts.inc()
            self._publish()
            await backends.stop(current)
        wanted: int | None
        try:
            wanted = await asyncio.to_thread(self.resolve)
        except ServingError as exc:
            if not self._keep_without_target:
                await self._drop(exc.message)
                return
            logger.warning("follower: cannot read the registry (%s); serving on", exc.message)
            wanted = self._version
        if wanted is None:
            return
        if self.backend is None and self.served_elsewhere is not None and self.served_elsewhere(wanted):
            return
        if self.backend is None:
            self._version = wanted
            self.backend = await self._launch(wanted)
            self.not_ready = None
            self._publish()
        elif wanted != self.backend.info.version:
            await self.switch(wanted)

    async def _drop(self, reason: str) -> None:
        """No target: stop the backend, if one runs, and say why once."""
        if self.not_ready != reason:
            say = logger.info if self._quiet else logger.warning
            say("follower: %s; no backend until it names a version", reason)
        self.not_ready = reason
        current = self.backend
        if current is not None and self.release is not None and await self.release(current):
            current = None  # Served elsewhere now, and forgotten here.
        self.backend, self._version = None, None
        if current is not None:
            self._publish()
            await backends.stop(current)

    async def switch(self, version: int) -> None:
        """Start a backend on `version`, route new requests to it, retire the old one when idle."""
        logger.info("follower: %s%s now names version %s", self.settings.model, self.settings.target, version)
        adopted = self.adopt(version) if self.adopt is not None else None
        if adopted is not None:
            await self.take(adopted)
            return
        await self._install(await self._launch(version))

    async def take(self, backend: Backend) -> None:
        """Serve from a backend another supervisor started, now that the registry names its version here."""
        if self.backend is backend:  # Both followers noticed the promotion; the first one took it.
            return
        await self._install(await self._retarget(backend))
        if self.adopted is not None:
            self.adopted(backend)

    def forget(self, backend: Backend) -> None:
        """Another supervisor serves this backend now: route nothing more to it here, and never stop it."""
        if self.backend is backend:
            self.backend, self.not_ready = None, "its version is served as production now"
            self._publish()

    async def _retarget(self, backend: Backend) -> Backend:
        backend.info = await asyncio.to_thread(
            describe, self.client, self.settings.model, backend.info.version, self.settings.target
        )
        self._started.append(backend.process.pid)
        return backend

    async def _install(self, new: Backend) -> None:
        """Route new requests to `new`; retire the old backend once idle."""
        old, version = self.backend, new.info.version
        if old is new:
            return
        self._version = version
        self.backend = new
        self._publish()
        self._metrics.switches.inc()
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

    async def close(self) -> None:
        """Stop following and stop every backend, letting retiring ones finish first."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        for task in list(self._retiring):
            await task
        if self.backend is not None:
            await backends.stop(self.backend)
            self.backend = None
            self._publish()
