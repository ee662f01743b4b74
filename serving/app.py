"""The proxy's HTTP API: MLflow's `/invocations` plus health, model facts and the prediction log."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from serving import feedback, store
from serving.auth import identify
from serving.drift import latest_summary
from serving.entities import restore_id
from serving.errors import BadRequest, NotFound, PayloadTooLarge, ServingError, Unavailable
from serving.openapi import BY_ID_BODY, INVOCATIONS_BODY, PREDICTIONS, errors
from serving.records import pseudonym
from serving.runtime import Runtime
from serving.upstream import translate
from serving.validation import JSON_TYPE, check_params, check_rows, media_type, parse
from serving.waterfall import render_png

logger = logging.getLogger(__name__)
ENTITY_ID_MAX = 256  # The width of the entity table's id column.


def _error_body(error_code: str, message: str) -> dict[str, str]:
    # The shape of MLflow's own error bodies, less the stack trace, so clients handle one format.
    return {"error_code": error_code, "message": message}


def error_response(error: ServingError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON answer for one of our errors."""
    return JSONResponse(_error_body(error.error_code, error.message), error.status_code, headers=headers)


async def _serving_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()]
    return JSONResponse(_error_body("INVALID_PARAMETER_VALUE", "; ".join(problems)), 400)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "ENDPOINT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    return JSONResponse(
        _error_body(codes.get(exc.status_code, "BAD_REQUEST"), str(exc.detail)), exc.status_code
    )


async def _unexpected(_: Request, exc: Exception) -> Response:
    logger.error("unexpected error", exc_info=exc)
    return JSONResponse(_error_body("INTERNAL_ERROR", "internal error; see the proxy's log"), 500)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def require_key(request: Request) -> str | None:
    """Dependency: the caller's key id; 401 when keys are configured and none matches."""
    return identify(_runtime(request).keys, request.headers.get("x-api-key"))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_large = PayloadTooLarge(f"request body is over the limit of {limit} bytes (SERVING_MAX_BODY_BYTES)")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given is None:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(given))
    except ValueError as exc:
        raise BadRequest("X-Request-ID: must be a UUID") from exc


async def _logged_request(runtime: Runtime, request_id: uuid.UUID) -> dict[str, Any]:
    found = await runtime.on_database(store.get_request, request_id=request_id)
    if found is None:
        raise NotFound(f"request {request_id} is not in the log (yet: rows are written within seconds)")
    return found


Key = Annotated[str | None, Depends(require_key)]
BodyMaker = Callable[[], Awaitable[tuple[bytes, str]]]


async def _scored(request: Request, endpoint: str, make_body: BodyMaker) -> Response:
    """Forward one scoring request, spool its log record, and answer, whatever happened."""
    runtime = _runtime(request)
    received_at, started = datetime.now(UTC), time.perf_counter()
    request_id, key_id, backend, upstream_ms = str(uuid.uuid4()), None, None, None
    body, content_type = b"", request.headers.get("content-type", JSON_TYPE)
    answer: bytes | None = None
    error: ServingError | None = None
    try:
        request_id = _request_id(request)
        key_id = identify(runtime.keys, request.headers.get("x-api-key"))
        body, content_type = await make_body()
        reply, backend, upstream_ms = await runtime.forward(body, content_type)
        if reply.status_code != 200:
            raise translate(reply.status_code, reply.content)
        answer = reply.content
    except ServingError as exc:
        error = exc
    try:
        runtime.log(
            request_id=request_id, received_at=received_at, key_id=key_id, endpoint=endpoint,
            backend=backend, status_code=error.status_code if error else 200,
            total_ms=(time.perf_counter() - started) * 1000, upstream_ms=upstream_ms,
            content_type=content_type, body=body, response=answer, error=error.message if error else None,
        )  # fmt: skip
    except ServingError as exc:  # The spool is full and the policy is to refuse.
        error = error or exc
    served = backend or runtime.backend
    runtime.metrics.answered(
        endpoint=endpoint, status=error.status_code if error else 200,
        version=served.info.version if served else None, seconds=time.perf_counter() - started,
        upstream_seconds=None if upstream_ms is None else upstream_ms / 1000,
    )  # fmt: skip
    if error is not None or answer is None or backend is None:
        return error_response(error or Unavailable("no answer"), {"X-Request-ID": request_id})
    headers = {"X-Request-ID": request_id, "X-Model-Version": str(backend.info.version)}
    return Response(answer, 200, media_type=JSON_TYPE, headers=headers)


def create_app(runtime: Runtime) -> FastAPI:
    """The proxy application around a started runtime."""
    app = FastAPI(
        title="Explainable classifier",
        summary="MLflow's scoring protocol with a persisted, explainable prediction log.",
    )
    app.state.runtime = runtime
    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    limit = runtime.settings.max_body_bytes

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The proxy process is alive."""
        return {"status": "ok"}

    @app.get("/ready", responses=errors(503))
    async def ready() -> Response:
        """The backend answers `/ping` and the log store is reachable."""
        reasons = []
        if problem := await runtime.ping_backend():
            reasons.append(problem)
        if problem := await runtime.ping_database():
            reasons.append(problem)
        version = runtime.backend.info.version if runtime.backend else None
        body = {"status": "not ready" if reasons else "ready", "model_version": version, "reasons": reasons}
        return JSONResponse(body, 503 if reasons else 200)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def metrics() -> Response:
        """Prometheus metrics of this process (open, like /ready: counts and timings, no data)."""
        return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/model", responses=errors(401, 503))
    async def model(_: Key) -> dict[str, Any]:
        """The served version: registry facts, threshold, holdout metrics, schema and params."""
        backend = runtime.backend
        if backend is None:
            raise Unavailable(f"the model server is not running: {runtime.not_ready}")
        return backend.info.as_json()

    @app.post(
        "/invocations",
        openapi_extra={"requestBody": INVOCATIONS_BODY},
        responses={**PREDICTIONS, **errors(400, 401, 413, 415, 500, 503, 504)},
    )
    async def invocations(request: Request) -> Response:
        """MLflow's scoring protocol, unchanged; adds X-Request-ID and X-Model-Version."""

        async def body() -> tuple[bytes, str]:
            raw = await _read_body(request, limit)
            content_type = request.headers.get("content-type", JSON_TYPE)
            backend = runtime.backend
            if media_type(content_type) == JSON_TYPE and backend is not None:
                payload = parse(raw)
                check_rows(payload, backend.info.inputs)
                check_params(payload, backend.info.params)
            return raw, content_type

        return await _scored(request, "/invocations", body)

    @app.post(
        "/predict/by-id/{entity_id}",
        openapi_extra={"requestBody": BY_ID_BODY},
        responses={**PREDICTIONS, **errors(400, 401, 404, 413, 500, 503, 504)},
    )
    async def predict_by_id(request: Request, entity_id: str) -> Response:
        """Score an entity from the entity table; an optional JSON body may carry `params`."""

        async def body() -> tuple[bytes, str]:
            raw = await _read_body(request, limit)
            params = None
            if raw.strip():
                payload = parse(raw)
                if set(payload) - {"params"}:
                    raise BadRequest('body: may only hold params, like {"params": {"top_k": 3}}')
                if runtime.backend is not None:
                    check_params(payload, runtime.backend.info.params)
                params = payload.get("params")
            unknown = NotFound(f"the entity is not in the entity table of {runtime.settings.model!r}")
            if "\x00" in entity_id or len(entity_id) > ENTITY_ID_MAX:  # Cannot be stored, so not there.
                raise unknown
            hmac_key, backend = runtime.settings.hmac_key, runtime.backend
            features = await runtime.on_database(
                store.get_entity, model_name=runtime.settings.model,
                entity_id=pseudonym(entity_id, hmac_key) if hmac_key else entity_id,
            )  # fmt: skip
            if features is None:  # The id is not echoed: the log keeps the message, ids may be pseudonyms.
                raise unknown
            if hmac_key and backend is not None:
                features = restore_id(features, entity_id, backend.info)
            document: dict[str, Any] = {"dataframe_records": [features]}
            if params:
                document["params"] = params
            return json.dumps(document).encode(), JSON_TYPE

        return await _scored(request, "/predict/by-id/{entity_id}", body)

    @app.post(
        "/feedback",
        status_code=201,
        responses={200: {"description": "replaced"}, **errors(400, 401, 404, 503)},
    )
    async def record_feedback(_: Key, outcome: feedback.Feedback, response: Response) -> dict[str, Any]:
        """Record the observed label of a logged prediction; a second label for a row replaces the first."""
        labels = runtime.backend.info.labels if runtime.backend else None
        if labels is None:
            raise Unavailable("the served model version does not name its labels (model server not running?)")
        [stored] = await runtime.on_database(
            feedback.record, outcomes=[outcome], model_name=runtime.settings.model, labels=labels,
            hmac_key=runtime.settings.hmac_key, source="api",
        )  # fmt: skip
        if stored["replaced"] is None:
            stored["message"] = "recorded"
        else:
            response.status_code = 200
            stored["message"] = f"replaced the earlier label {stored['replaced']!r}"
        return stored

    @app.get("/drift", responses=errors(401, 404, 503))
    async def drift(_: Key) -> dict[str, Any]:
        """The latest drift summary of this model (`python -m monitoring drift`), from MLflow."""
        backend = runtime.backend
        if backend is None or backend.info.run_id is None:
            raise Unavailable(f"the model server is not running: {runtime.not_ready}")
        return await asyncio.to_thread(
            latest_summary, runtime.client, model=runtime.settings.model, run_id=backend.info.run_id
        )

    @app.get("/predictions", responses=errors(400, 401, 503))
    async def predictions(
        _: Key,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
        model_version: Annotated[int | None, Query(ge=1)] = None,
    ) -> dict[str, Any]:
        """The latest logged predictions of this model, newest first."""
        rows = await runtime.on_database(
            store.latest_predictions, limit=limit,
            model_name=runtime.settings.model, model_version=model_version,
        )  # fmt: skip
        return {"predictions": rows}

    @app.get("/predictions/{request_id}", responses=errors(400, 401, 404, 503))
    async def prediction(_: Key, request_id: uuid.UUID) -> dict[str, Any]:
        """One logged request with its predictions."""
        return await _logged_request(runtime, request_id)

    @app.get(
        "/predictions/{request_id}/waterfall.png",
        responses={200: {"content": {"image/png": {}}}, **errors(400, 401, 404, 503)},
        response_class=Response,
    )
    async def waterfall(_: Key, request_id: uuid.UUID, row: Annotated[int, Query(ge=0)] = 0) -> Response:
        """A SHAP waterfall plot of one logged row, from its stored contributions."""
        found = await _logged_request(runtime, request_id)
        rows = {item["row_index"]: item for item in found["predictions"]}
        if row not in rows:
            raise NotFound(f"request {request_id} has no logged row {row}")
        item = rows[row]
        if not item["contributions"] or item["base_value"] is None:
            raise NotFound(f"request {request_id} row {row} was scored without explanations")
        png = await asyncio.to_thread(
            render_png, contributions=item["contributions"], base_value=item["base_value"],
            score=item["score"], features=item["input"] or {},
        )  # fmt: skip
        return Response(png, media_type="image/png")

    return app
