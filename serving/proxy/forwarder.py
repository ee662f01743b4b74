"""Forwarding: one HTTP session to the backends' `/invocations` and `/ping`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from serving.errors import BackendTimeout, Unavailable
from serving.proxy.backend import Backend


@dataclass(frozen=True)
class Reply:
    """A backend's answer to `/invocations`."""

    status_code: int
    content: bytes


class BackendUnreachable(Unavailable):
    """The backend did not take the connection or broke it: it may have died."""


class Forwarder:
    """Sends bodies to a backend as they came, and asks it whether it is alive."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self._timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The one client session; made on first use, since a session belongs to the running loop."""
        # aiohttp, not httpx, on this hop: measured here, it costs a fifth of httpx's CPU per request.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256),
                timeout=aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=self._timeout_seconds),
                auto_decompress=False,
            )
        return self._session

    async def forward(self, backend: Backend, body: bytes, content_type: str) -> tuple[Reply, float]:
        """The backend's answer to `/invocations` and the milliseconds it took; 504 or 503 otherwise."""
        backend.inflight += 1
        started = time.perf_counter()
        try:
            async with self.session.post(
                f"{backend.url}/invocations", data=body, headers={"content-type": content_type}
            ) as answer:
                reply = Reply(answer.status, await answer.read())
        except aiohttp.SocketTimeoutError as exc:
            raise BackendTimeout(f"the model did not answer within {self._timeout_seconds:g} s") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnreachable("the model server is not answering; retry shortly") from exc
        finally:
            backend.inflight -= 1
        return reply, (time.perf_counter() - started) * 1000

    async def ping(self, backend: Backend) -> str | None:
        """None if the backend answers `/ping`, else why not."""
        try:
            async with self.session.get(
                f"{backend.url}/ping", timeout=aiohttp.ClientTimeout(total=2.0)
            ) as answer:
                status = answer.status
        except (aiohttp.ClientError, TimeoutError):
            return f"model server for version {backend.info.version} does not answer /ping"
        return None if status == 200 else f"model server answered /ping with {status}"

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
