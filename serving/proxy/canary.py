"""The canary: the version `@canary` names answers a share of the people scored, the same people each time.

Whoever rolls a version out sets the alias and the registered model's tag `rollout.share` (percent);
every proxy reads both at each poll, so replicas, and a restarted proxy, route alike with no flag.
A person goes to the canary when a hash of their id as the log keeps it (the pseudonym when
`ENTITY_ID_HMAC_KEY` is set), salted with the model and the canary's version, falls under the
share: a larger share keeps everyone it had. A request without an id is drawn on its own; a request
with several people goes to the canary only if all of them are assigned to it, else to production
(a request is never split between versions). Each row the canary answers is scored again by the
production version off the request path, as shadow scoring does the other way round, so the two
versions are compared on the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from logstore.records import logged_id
from logstore.spool import Spool
from registry_scripts.rollout import CANARY, PLAN_TAG, SHARE_TAG, Plan
from serving.errors import ServingError
from serving.proxy.backend import Backend
from serving.proxy.batching import Batcher, Rows
from serving.proxy.forwarder import Forwarder
from serving.proxy.metrics import Metrics
from serving.proxy.shadow import Shadow
from serving.proxy.supervisor import Supervisor
from serving.settings import ServingSettings

logger = logging.getLogger(__name__)
STATE_FILE = "canary.json"  # In the spool directory, beside `backend.json`.


def assigned(key: str, *, model: str, version: int, share: float) -> bool:
    """Whether the person with this logged id goes to the canary: their salted hash under the share."""
    digest = hashlib.sha256(f"{model}\x00{version}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < share / 100 * 2**64


def parse_share(text: str | None) -> float:
    """The share a tag holds, as a percentage in [0, 100]; ValueError when it is not one."""
    if text is None or not text.strip():
        return 0.0
    share = float(text)
    if not 0 <= share <= 100:
        raise ValueError(f"{SHARE_TAG} must be a percentage from 0 to 100, got {text!r}")
    return share


class Canary:
    """The canary's backend, the share it answers, and the production calls that mirror its answers."""

    def __init__(
        self,
        settings: ServingSettings,
        *,
        client: MlflowClient,
        forwarder: Forwarder,
        metrics: Metrics,
        spool: Spool,
        production: Supervisor,
        batcher: Batcher | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        followed = settings.model_copy(update={"alias": CANARY, "stage": None})
        self.supervisor = Supervisor(
            followed, client=client, forwarder=forwarder, metrics=metrics, state_file=STATE_FILE,
            keep_without_target=False, quiet_without_target=True,
        )  # fmt: skip
        self.mirror = Shadow(
            settings, client=client, forwarder=forwarder, metrics=metrics, spool=spool, borrowed=production,
            calls=metrics.mirror_calls, batcher=batcher,
        )  # fmt: skip
        # Promoted: production takes the canary's running backend, whichever of the two notices first.
        self.production = production
        production.adopt = self._running
        production.adopted = self.supervisor.forget
        self.supervisor.release = self._release
        self.supervisor.served_elsewhere = self._served
        self.share = 0.0
        self.plan: Plan | None = None  # The controller's plan, for `GET /rollout`; routing reads the share.
        self._metrics = metrics
        self._reader: asyncio.Task[None] | None = None
        self._said = ""

    async def start(self) -> None:
        """Follow `@canary` and its share (a rollout that starts later is picked up at the next poll)."""
        self.supervisor.not_ready = f"no models:/{self.settings.model}@{CANARY}"
        self.mirror.start_workers()
        self._reader = asyncio.create_task(self._follow(), name="canary-follower")

    async def _follow(self) -> None:
        """Each poll, one read of the registered model: its share and whether `@canary` names a version."""
        while True:
            try:
                model = await asyncio.to_thread(self.client.get_registered_model, self.settings.model)
                tags = model.tags or {}
                self.share = parse_share(tags.get(SHARE_TAG))
                self.plan = _plan(tags.get(PLAN_TAG))
                self._said = ""
                if CANARY in (model.aliases or {}) or self.supervisor.backend is not None:
                    await self.supervisor.check()  # Start, restart, switch or stop the canary's backend.
            except (MlflowException, ValueError) as exc:
                message = exc.message if isinstance(exc, MlflowException) else str(exc)
                if message != self._said:  # Once, not every poll; the last share holds meanwhile.
                    logger.warning("canary: cannot read the rollout (%s); keeping %g%%", message, self.share)
                    self._said = message
            except ServingError as exc:
                logger.warning("canary: %s", exc.message)
            except Exception:
                logger.exception("canary: unexpected error; still following")
            await asyncio.sleep(self.settings.poll_seconds)

    def _running(self, version: int) -> Backend | None:
        backend = self.supervisor.backend
        return backend if backend is not None and backend.info.version == version else None

    def _served(self, version: int) -> bool:
        backend = self.production.backend
        return backend is not None and backend.info.version == version

    async def _release(self, backend: Backend) -> bool:
        """`@canary` is gone: if production now names the canary's version, production takes its backend."""
        if self.production.backend is backend:
            return True
        try:
            wanted = await asyncio.to_thread(self.production.resolve)
        except ServingError:
            return False
        if wanted != backend.info.version:
            return False
        await self.production.take(backend)
        return True

    @property
    def active(self) -> bool:
        """Whether some requests go to the canary now."""
        return self.supervisor.backend is not None and self.share > 0

    def pick(self, rows: Rows | None, id_column: str | None, hmac_key: bytes | None) -> Backend | None:
        """The canary's backend when this request goes to it, else None (production answers)."""
        backend, share = self.supervisor.backend, self.share
        if backend is None or share <= 0:
            return None
        version = backend.info.version
        ids = _ids(rows, id_column)
        name = self.settings.model
        if ids:
            keys = [str(logged_id(entity, hmac_key)) for entity in ids]
            chosen = all(assigned(key, model=name, version=version, share=share) for key in keys)
        else:
            chosen = random.random() * 100 < share  # A traffic split, not a secret.
        self._metrics.canary_requests.labels("canary" if chosen else "production").inc()
        return backend if chosen else None

    async def close(self) -> None:
        """Stop reading the share, the mirror's workers and the canary's backends."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.mirror.close()
        await self.supervisor.close()


def _plan(raw: str | None) -> Plan | None:
    """The plan a tag holds; None when there is none or it is not one (`rollout --status` says so)."""
    try:
        return None if raw is None else Plan.model_validate_json(raw)
    except ValidationError:
        return None


def _ids(rows: Rows | None, id_column: str | None) -> list[Any]:
    """The ids of a request's people, or none when any row lacks one."""
    if rows is None or id_column is None or id_column not in rows.columns:
        return []
    where = rows.columns.index(id_column)
    ids = [row[where] for row in rows.data]
    return ids if all(entity is not None for entity in ids) else []
