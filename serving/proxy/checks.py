"""The check of a scoring request's body, in a worker process when the body is large.

Parsing and checking a large body is CPU work that holds the GIL: on the event loop it would stall
every other client (a 14 MB body takes seconds), and a thread does not help. A worker process does.
Small bodies are checked in place, where a process hop would cost more than the check.
"""

from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from serving.errors import BadRequest, Unavailable
from serving.proxy.processes import background_worker
from serving.proxy.validation import CSV_TYPE, JSON_TYPE, check_params, check_rows, media_type, parse

logger = logging.getLogger(__name__)
INLINE_BYTES = 64 * 1024
NUL = "contains a NUL character, which the log store cannot hold; send the value without it"


@dataclass(frozen=True)
class Refusal:
    """Why a body is refused, in a form that crosses a process boundary."""

    message: str
    error_code: str
    status_code: int


def _parquet_nul(body: bytes) -> str | None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(body))
    except (pa.ArrowException, OSError, ValueError):
        return None  # MLflow answers what it cannot read; there is nothing to store.
    for name, column in zip(table.column_names, table.columns, strict=True):
        text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        if text and pc.any(pc.match_substring(column, "\x00")).as_py():
            return f"column {name[:40]!r}: {NUL}"
    return None


def check_body(
    body: bytes, content_type: str, inputs: Sequence[dict[str, Any]], params: Sequence[dict[str, Any]]
) -> dict[str, Any] | None:
    """Raise `BadRequest` unless a scoring body fits the model (JSON) or can be logged (CSV, Parquet).

    A JSON body's parsed payload is returned, for the batcher.
    """
    kind = media_type(content_type)
    if kind == JSON_TYPE:
        payload = parse(body)
        check_rows(payload, inputs)
        check_params(payload, params)
        return payload
    if kind == CSV_TYPE:
        if b"\x00" in body:
            raise BadRequest(f"body: {NUL}")
    elif problem := _parquet_nul(body):
        raise BadRequest(problem)
    return None


def verdict(
    body: bytes, content_type: str, inputs: Sequence[dict[str, Any]], params: Sequence[dict[str, Any]]
) -> Refusal | None:
    """`check_body`'s answer as a value: None when the body is fine."""
    try:
        check_body(body, content_type, inputs, params)
    except BadRequest as exc:
        return Refusal(exc.message, exc.error_code, exc.status_code)
    return None


class Checker:
    """Checks bodies in place when small, in a worker process when large."""

    def __init__(self, *, workers: int = 1) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:  # spawn: the proxy has threads, and a fork would copy their locks.
            context = multiprocessing.get_context("spawn")
            # Niced: a large body's check yields the CPU to the one-row requests of other clients.
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers, mp_context=context, initializer=background_worker
            )
        return self._pool

    async def start(self) -> None:
        """Start the worker now, so the first large request does not wait for it."""
        await asyncio.get_running_loop().run_in_executor(self._executor(), verdict, b"{}", JSON_TYPE, [], [])

    async def check(
        self,
        body: bytes,
        content_type: str,
        inputs: Sequence[dict[str, Any]],
        params: Sequence[dict[str, Any]],
    ) -> dict[str, Any] | None:
        """Raise `BadRequest` unless the body fits; never blocks the event loop for a large body.

        The parsed payload of a JSON body checked in place comes back (a large one's stays in the worker).
        """
        if len(body) <= INLINE_BYTES:
            return check_body(body, content_type, inputs, params)
        media_type(content_type)  # A 415 needs no worker.
        try:
            refusal = await asyncio.get_running_loop().run_in_executor(
                self._executor(), verdict, body, content_type, list(inputs), list(params)
            )
        except BrokenProcessPool as exc:
            logger.error("request check: the worker process died; starting another")  # noqa: TRY400 - the message says it all; no traceback
            self._pool = None
            raise Unavailable("the request could not be checked (its worker died); retry") from exc
        if refusal is not None:
            raise BadRequest(refusal.message, error_code=refusal.error_code, status_code=refusal.status_code)
        return None

    def close(self) -> None:
        """Stop the worker."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
