"""The scoring service: what every scoring request goes through between its route and the backend.

Id, key, read, check, forward, log, metrics, in that order, whatever fails: every request that gets
an answer (or whose client hung up) leaves exactly one record in the spool, under an id of its own.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from logstore.errors import LogStoreError
from serving.errors import BadRequest, ClientClosed, PayloadTooLarge, ServingError, Unavailable, from_store
from serving.proxy.auth import identify, permit
from serving.proxy.runtime import Runtime
from serving.proxy.shadow import ShadowJob
from serving.proxy.upstream import translate
from serving.proxy.validation import JSON_TYPE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Body:
    """A scoring request's body as it goes to the backend."""

    raw: bytes
    content_type: str
    payload: dict[str, Any] | None = None  # A JSON body's checked, parsed form: the batcher may merge it.


BodyMaker = Callable[[], Awaitable[Body]]


def error_body(error_code: str, message: str) -> dict[str, str]:
    """The shape of MLflow's own error bodies, less the stack trace, so clients handle one format."""
    return {"error_code": error_code, "message": message}


def error_response(
    error: ServingError,
    headers: dict[str, str] | None = None,
    *,
    status_code: int | None = None,
    code: str | None = None,
) -> JSONResponse:
    """The JSON answer for one of our errors (its message bounded like every message we answer)."""
    return JSONResponse(
        error_body(code or error.error_code, error.message), status_code or error.status_code, headers=headers
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; 413 past `limit` bytes, `ClientClosed` when the client hangs up meanwhile."""
    declared = request.headers.get("content-length", "")
    too_large = PayloadTooLarge(f"request body is over the limit of {limit} bytes (SERVING_MAX_BODY_BYTES)")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ClientClosed(f"the client closed the connection after {size} bytes of its body") from exc
    return b"".join(chunks)


def client_request_id(request: Request) -> uuid.UUID | None:
    """The X-Request-ID a client sent, which is stored beside the request's own id; 400 unless a UUID."""
    given = request.headers.get("x-request-id")
    if given is None:
        return None
    try:
        return uuid.UUID(given)
    except ValueError as exc:
        raise BadRequest("X-Request-ID: must be a UUID") from exc


async def score(request: Request, runtime: Runtime, endpoint: str, make_body: BodyMaker) -> Response:
    """Forward one scoring request, spool its log record, and answer, whatever happened."""
    received_at, started = datetime.now(UTC), time.perf_counter()
    # Our own id, never the client's: a reused or claimed X-Request-ID cannot mix two requests.
    request_id, client_id, key_id, backend, call = str(uuid.uuid4()), None, None, None, None
    body = Body(b"", request.headers.get("content-type", JSON_TYPE))
    answer: bytes | None = None
    error: ServingError | None = None
    try:
        client_id = client_request_id(request)
        key = identify(runtime.keys, request.headers.get("x-api-key"))
        key_id = key.key_id if key is not None else None
        permit(key, "score", f"{request.method} {request.url.path}")
        body = await make_body()
        call, backend = await runtime.forward(body.raw, body.content_type, body.payload)
        if call.reply.status_code == 200:
            answer = call.reply.content
        else:
            error = translate(call.reply.status_code, call.reply.content)
    except ServingError as exc:
        error = exc
    except LogStoreError as exc:
        error = from_store(exc)
    except Exception:
        logger.exception("request %s: unexpected error", request_id)
        error = ServingError("internal error; see the proxy's log")
    try:
        runtime.log(
            request_id=request_id, client_request_id=client_id, received_at=received_at, key_id=key_id,
            endpoint=endpoint, backend=backend, status_code=error.status_code if error else 200,
            total_ms=(time.perf_counter() - started) * 1000, call=call,
            content_type=body.content_type, body=body.raw, response=answer,
            error=error.message if error else None,
        )  # fmt: skip
    except LogStoreError as exc:
        # The spool is full or cannot be written, and the policy is to refuse: no answer unlogged.
        logger.error("request %s: not answered, its log record could not be spooled: %s", request_id, exc)  # noqa: TRY400 - the message says it all; no traceback
        error = error or from_store(exc)
    served = backend or runtime.backend
    runtime.metrics.answered(
        endpoint=endpoint, status=error.status_code if error else 200,
        version=served.info.version if served else None, seconds=time.perf_counter() - started,
        upstream_seconds=None if call is None else call.upstream_ms / 1000,
    )  # fmt: skip
    headers = {"X-Request-ID": request_id}
    if client_id is not None:
        headers["X-Client-Request-ID"] = str(client_id)
    if error is not None or answer is None or backend is None:
        return error_response(error or Unavailable("no answer"), headers)
    headers["X-Model-Version"] = str(backend.info.version)
    shadow = None
    if runtime.shadow is not None or backend is runtime.canary.supervisor.backend:  # After the answer.
        job = ShadowJob(request_id, body.raw, body.content_type, body.payload)
        shadow = BackgroundTask(runtime.shadow_later, job, backend)
    return Response(answer, 200, media_type=JSON_TYPE, headers=headers, background=shadow)
