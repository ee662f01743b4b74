"""The proxy's HTTP API: MLflow's `/invocations` plus health, model facts and the prediction log."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Annotated, Any

import mlflow
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from logstore import feedback, store
from logstore.errors import LogStoreError
from logstore.records import pseudonym
from serving.auth import identify
from serving.drift import latest_summary
from serving.entities import restore_id
from serving.errors import BadRequest, NotFound, ServingError, Unavailable, from_store
from serving.openapi import BY_ID_BODY, INVOCATIONS_BODY, PREDICTIONS, errors
from serving.runtime import Runtime
from serving.scoring import error_body, error_response, read_body, score
from serving.validation import JSON_TYPE, check_params, media_type, parse
from serving.waterfall import render_png

logger = logging.getLogger(__name__)
ENTITY_ID_MAX = 256  # The width of the entity table's id column.
BY_ID_BODY_BYTES = 64 * 1024


async def _serving_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    return error_response(exc)


async def _store_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, LogStoreError)
    return error_response(from_store(exc))


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()]
    return JSONResponse(error_body("INVALID_PARAMETER_VALUE", "; ".join(problems)), 400)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "ENDPOINT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    return JSONResponse(
        error_body(codes.get(exc.status_code, "BAD_REQUEST"), str(exc.detail)), exc.status_code
    )


async def _unexpected(_: Request, exc: Exception) -> Response:
    logger.error("unexpected error", exc_info=exc)
    return JSONResponse(error_body("INTERNAL_ERROR", "internal error; see the proxy's log"), 500)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def require_key(request: Request) -> str | None:
    """Dependency: the caller's key id; 401 when keys are configured and none matches."""
    return identify(_runtime(request).keys, request.headers.get("x-api-key"))


async def _logged_request(runtime: Runtime, request_id: uuid.UUID) -> dict[str, Any]:
    found = await runtime.on_database(store.get_request, request_id=request_id)
    if found is None:
        raise NotFound(f"request {request_id} is not in the log (yet: rows are written within seconds)")
    return found


Key = Annotated[str | None, Depends(require_key)]


def create_app(runtime: Runtime) -> FastAPI:
    """The proxy application around a started runtime."""
    app = FastAPI(
        title="Explainable classifier",
        summary="MLflow's scoring protocol with a persisted, explainable prediction log.",
    )
    app.state.runtime = runtime
    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(LogStoreError, _store_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    limit = runtime.settings.max_body_bytes

    async def ping() -> Response:
        """As `mlflow models serve` answers: 200 and a newline while a model version is served."""
        if runtime.backend is None:
            raise Unavailable(f"the model server is not running: {runtime.not_ready}")
        return Response("\n", media_type=JSON_TYPE)

    for path in ("/ping", "/health"):
        app.get(path, response_class=Response, responses={200: {"content": {JSON_TYPE: {}}}, **errors(503)})(
            ping
        )

    @app.get("/version", response_class=Response, responses={200: {"content": {JSON_TYPE: {}}}})
    async def version() -> Response:
        """As `mlflow models serve` answers: the MLflow version, as plain text."""
        return Response(mlflow.__version__, media_type=JSON_TYPE)

    @app.get("/ready", responses=errors(503))
    async def ready() -> Response:
        """The backend answers `/ping` and the log store is reachable."""
        reasons = []
        if problem := await runtime.ping_backend():
            reasons.append(problem)
        if problem := await runtime.ping_database():
            reasons.append(problem)
        if problem := runtime.writer_problem():
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
            raw = await read_body(request, limit)
            content_type = request.headers.get("content-type", JSON_TYPE)
            backend = runtime.backend
            if backend is None:
                media_type(content_type)
            else:
                await runtime.checker.check(raw, content_type, backend.info.inputs, backend.info.params)
            return raw, content_type

        return await score(request, runtime, "/invocations", body)

    @app.post(
        "/predict/by-id/{entity_id}",
        openapi_extra={"requestBody": BY_ID_BODY},
        responses={**PREDICTIONS, **errors(400, 401, 404, 413, 500, 503, 504)},
    )
    async def predict_by_id(request: Request, entity_id: str) -> Response:
        """Score an entity from the entity table; an optional JSON body may carry `params`."""

        async def body() -> tuple[bytes, str]:
            raw = await read_body(request, limit)
            params = None
            if len(raw) > BY_ID_BODY_BYTES:
                raise BadRequest(f"body: holds only params here, at most {BY_ID_BODY_BYTES} bytes")
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

        return await score(request, runtime, "/predict/by-id/{entity_id}", body)

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
