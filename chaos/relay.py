"""A TCP relay between the proxy and PostgreSQL whose link can be cut or made to hang, on demand."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

from serving.proxy.backend import free_port

CHUNK = 65536


class Relay:
    """Forwards 127.0.0.1:`port` to the target; `cut`, `hang` and `restore` change what a client sees.

    - cut: every open connection is reset and new ones are refused, as when the server stops.
    - hang: connections open, but no byte moves either way, as when the server or the network stalls.
    - restore: bytes flow again (held ones first) and new connections are accepted.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._links: set[asyncio.StreamWriter] = set()

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def start(self) -> Relay:
        """Listen and forward."""
        self._thread.start()
        self._call(self._open())
        return self

    async def _open(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
        self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port, reuse_address=True)

    async def _link(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._links |= {client_writer, server_writer}
        try:
            await asyncio.gather(
                self._pump(client_reader, server_writer), self._pump(server_reader, client_writer)
            )
        finally:
            for writer in (client_writer, server_writer):
                self._links.discard(writer)
                writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()  # Bytes read just before a hang are held until restore.
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        self._call(self._cut())

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()

    def hang(self) -> None:
        """Accept connections but move no byte until `restore`."""
        self._call(self._hang())

    async def _hang(self) -> None:
        assert self._flowing is not None
        self._flowing.clear()

    def restore(self) -> None:
        """Forward again."""
        self._call(self._open())

    def close(self) -> None:
        """Cut every link and stop the relay's thread."""
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
