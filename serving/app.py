"""The proxy's HTTP API: MLflow's scoring routes plus health, model facts and the prediction log.

The routes live in `serving.routes`, one module per concern; here they are put together, and every
error, ours, the log store's or the framework's, is turned into MLflow's JSON error shape.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from logstore.errors import LogStoreError
from serving.errors import ServingError, from_store
from serving.routes import health, log, model, scoring
from serving.runtime import Runtime
from serving.scoring import error_body, error_response

logger = logging.getLogger(__name__)


async def _serving_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    return error_response(exc)


async def _store_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, LogStoreError)
    return error_response(from_store(exc))


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()]
    return error_response(ServingError("; ".join(problems)), status_code=400, code="INVALID_PARAMETER_VALUE")


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "ENDPOINT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    return JSONResponse(
        error_body(codes.get(exc.status_code, "BAD_REQUEST"), str(exc.detail)), exc.status_code
    )


async def _unexpected(_: Request, exc: Exception) -> Response:
    logger.error("unexpected error", exc_info=exc)
    return JSONResponse(error_body("INTERNAL_ERROR", "internal error; see the proxy's log"), 500)


class ScoringFirst:
    """`POST /invocations` straight to its handler, past FastAPI's middleware stack and routing.

    Those layers took a quarter of the proxy's CPU on a one-row request (py-spy); the handler answers
    every error itself, so they add nothing to it. The route stays declared in the app, which keeps
    it in the OpenAPI schema, and every other request goes through the app as usual.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope["type"] != "http" or scope["method"] != "POST" or path != "/invocations":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app  # Where the handler finds its runtime, as under the router.
        request = Request(scope, receive)
        try:
            response = await scoring.invocations(request)
        except Exception as exc:
            response = await _unexpected(request, exc)
        await response(scope, receive, send)


def create_app(runtime: Runtime) -> ScoringFirst:
    """The proxy application around a runtime."""
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
    for routes in (health, model, scoring, log):
        app.include_router(routes.router)
    return ScoringFirst(app)
