"""Natural batching: scoring requests that wait while the backend is busy share its next call.

`mlflow models serve` spends most of a one-row request on per-call work (JSON to pandas, schema
enforcement, output), so under concurrency the backend is busy with overhead. Here each backend has
as many call slots as it has workers; a request that finds a slot free goes at once, as it was sent.
Requests that arrive while every slot is busy wait, and the next free slot takes the waiting ones
that can share a call (same columns, same params) as one `dataframe_split`, then gives each its own
slice of the answer, serialized as MLflow serializes it. A merged call that is not answered with one
prediction per row is retried request by request, so one request's problem is never another's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import orjson

from logstore.formats import FormatError, read
from serving.proxy.backend import Backend
from serving.proxy.forwarder import Forwarder, Reply
from serving.proxy.validation import JSON_TYPE


@dataclass(frozen=True)
class Rows:
    """A checked JSON body as values in column order: what merging it with others needs."""

    columns: tuple[str, ...]
    data: list[list[Any]]
    params: dict[str, Any] | None

    @cached_property  # Compared with every waiting request's at each take.
    def key(self) -> tuple[frozenset[str], str]:
        """Bodies with equal keys can share a call: the same columns (in any order), the same params."""
        return frozenset(self.columns), json.dumps(self.params, sort_keys=True)

    def values(self, columns: tuple[str, ...]) -> list[list[Any]]:
        """The rows' values in another order of the same columns."""
        if columns == self.columns:
            return self.data
        where = [self.columns.index(name) for name in columns]
        return [[row[i] for i in where] for row in self.data]


def read_as_json_by_mlflow(content_type: str) -> bool:
    """Whether MLflow's scoring server reads a body sent with this Content-Type as JSON.

    Its own rules, case and all (`mlflow.pyfunc.scoring_server.invocations`): the media type exactly
    `application/json`, no parameter but `charset`, and that one `utf-8` in any case, unquoted.
    Anything else it refuses with 415, so such a request goes alone and gets MLflow's own answer.
    """
    mime, *pairs = (part.strip() for part in content_type.split(";"))
    parameters = {name: value for name, _, value in (pair.partition("=") for pair in pairs)}
    return (
        mime == JSON_TYPE
        and parameters.keys() <= {"charset"}
        and parameters.get("charset", "utf-8").lower() == "utf-8"
    )


def mergeable(payload: dict[str, Any], content_type: str) -> Rows | None:
    """The rows of a checked `dataframe_split` or `dataframe_records` body; None if it must go alone."""
    return _rows(payload) if read_as_json_by_mlflow(content_type) else None


def _rows(payload: dict[str, Any]) -> Rows | None:
    try:
        rows = read(payload)
    except FormatError:
        return None
    params = payload.get("params")
    if rows.key == "dataframe_split":
        if "index" in rows.value:  # An index of its own: sent as it came.
            return None
        return Rows(tuple(rows.value["columns"]), rows.value["data"], params)
    if rows.key != "dataframe_records" or not rows.value:
        return None
    columns = tuple(rows.value[0])
    if any(row.keys() != rows.value[0].keys() for row in rows.value):
        return None  # Rows with different columns: MLflow fills the gaps, and so must it alone.
    return Rows(columns, [[row[name] for name in columns] for row in rows.value], params)


@dataclass(frozen=True)
class Call:
    """What one request got from the backend, and how: alone or merged, after how long a wait."""

    reply: Reply
    upstream_ms: float
    batch_requests: int
    batch_rows: int | None  # None: sent as it came, outside the batcher (its rows were not counted).
    queue_ms: float | None


@dataclass
class _Job:
    body: bytes
    content_type: str
    rows: Rows
    queued: float = field(default_factory=time.perf_counter)
    done: asyncio.Future[Call] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class _Lane:
    """One backend's waiting requests and its busy call slots."""

    backend: Backend
    waiting: deque[_Job] = field(default_factory=deque)
    busy: int = 0


def split(content: bytes, counts: Sequence[int]) -> list[bytes] | None:
    """Each request's share of a merged answer, as MLflow writes it; None unless one prediction per row."""
    try:
        answer = orjson.loads(content)  # Several times faster than json; the same values.
    except orjson.JSONDecodeError:
        try:  # MLflow writes NaN for an undefined number, which only json reads.
            answer = json.loads(content)
        except ValueError:
            return None
    predictions = answer.get("predictions") if isinstance(answer, dict) and len(answer) == 1 else None
    if not isinstance(predictions, list) or len(predictions) != sum(counts):
        return None
    parts, start = [], 0
    for count in counts:
        # MLflow's scoring server writes `json.dump({"predictions": ...})` with the default separators.
        parts.append(json.dumps({"predictions": predictions[start : start + count]}).encode())
        start += count
    return parts


class BatchEvents(Protocol):
    """What the batcher reports (the proxy's metrics)."""

    def batched(self, *, requests: int, rows: int, waits: Sequence[float]) -> None:
        """A backend call was made for `requests` requests of `rows` rows, after these waits (s)."""

    def unmerged(self) -> None:
        """A merged call failed and its requests were sent one by one."""


class Batcher:
    """Merges the requests waiting for each backend into its next calls."""

    def __init__(
        self, forwarder: Forwarder, *, slots: int, max_rows: int, max_wait_seconds: float, events: BatchEvents
    ) -> None:
        self._forwarder = forwarder
        self._slots = slots
        self._max_rows = max_rows
        self._max_wait = max_wait_seconds
        self._events = events
        self._lanes: dict[int, _Lane] = {}  # By id(backend): a lane lives only while it holds requests.
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, backend: Backend, body: bytes, content_type: str, rows: Rows) -> Call:
        """The backend's answer to this request, alone or as part of a merged call."""
        job = _Job(body, content_type, rows)
        lane = self._lanes.setdefault(id(backend), _Lane(backend))
        lane.waiting.append(job)
        backend.inflight += 1  # Queued counts as in flight: a replaced backend drains its queue too.
        try:
            if lane.busy < self._slots:
                lane.busy += 1
                task = asyncio.create_task(self._serve(lane))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return await asyncio.shield(job.done)  # A hung-up client's rows still get their answer.
        finally:
            backend.inflight -= 1

    async def _serve(self, lane: _Lane) -> None:
        """One call slot: take waiting requests, call, answer, until none waits."""
        try:
            while lane.waiting:
                if self._max_wait and sum(len(job.rows.data) for job in lane.waiting) < self._max_rows:
                    await asyncio.sleep(self._max_wait)  # Give a few more requests a chance to join.
                batch = self._take(lane.waiting)
                try:
                    await self._call(lane.backend, batch)
                except Exception as exc:
                    for job in batch:
                        if not job.done.done():
                            job.done.set_exception(exc)
        finally:
            lane.busy -= 1
            if not lane.busy and not lane.waiting:
                self._lanes.pop(id(lane.backend), None)

    def _take(self, waiting: deque[_Job]) -> list[_Job]:
        """The first waiting request and those after it that can share its call, up to the row bound."""
        first = waiting.popleft()
        batch, rows, kept = [first], len(first.rows.data), deque[_Job]()
        while waiting:
            job = waiting.popleft()
            if job.rows.key == first.rows.key and rows + len(job.rows.data) <= self._max_rows:
                batch.append(job)
                rows += len(job.rows.data)
            else:
                kept.append(job)
        waiting.extend(kept)
        return batch

    async def _call(self, backend: Backend, batch: list[_Job]) -> None:
        started = time.perf_counter()
        rows = sum(len(job.rows.data) for job in batch)
        self._events.batched(requests=len(batch), rows=rows, waits=[started - job.queued for job in batch])
        if len(batch) == 1:
            await self._alone(backend, batch[0], started)
            return
        columns, params = batch[0].rows.columns, batch[0].rows.params
        document: dict[str, Any] = {
            "dataframe_split": {
                "columns": list(columns),
                "data": [values for job in batch for values in job.rows.values(columns)],
            }
        }
        if params is not None:
            document["params"] = params
        reply, upstream_ms = await self._forwarder.forward(backend, json.dumps(document).encode(), JSON_TYPE)
        parts = (
            split(reply.content, [len(job.rows.data) for job in batch]) if reply.status_code == 200 else None
        )
        if parts is None:  # Some request in it is refused or breaks the model: each goes alone.
            self._events.unmerged()
            await asyncio.gather(*(self._alone(backend, job, started) for job in batch))
            return
        for job, part in zip(batch, parts, strict=True):
            job.done.set_result(
                Call(Reply(200, part), upstream_ms, len(batch), rows, (started - job.queued) * 1000)
            )

    async def _alone(self, backend: Backend, job: _Job, started: float) -> None:
        try:
            reply, upstream_ms = await self._forwarder.forward(backend, job.body, job.content_type)
        except Exception as exc:
            job.done.set_exception(exc)
            return
        job.done.set_result(Call(reply, upstream_ms, 1, len(job.rows.data), (started - job.queued) * 1000))

    async def close(self, *, cancel: bool = False) -> None:
        """Wait for the calls in flight (their requests are being answered), or (`cancel`) stop them."""
        if cancel:
            for task in self._tasks:
                task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
