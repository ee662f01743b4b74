"""The proxy's HTTP API: MLflow's scoring routes plus health, model facts and the prediction log.

The routes live in `serving.proxy.routes`, one module per concern; here they are put together, and every
error, ours, the log store's or the framework's, is turned into MLflow's JSON error shape.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send

from logstore.errors import LogStoreError
from serving.errors import ServingError, from_store
from serving.proxy.routes import health, log, model, scoring
from serving.proxy.runtime import Runtime
from serving.proxy.scoring import error_body, error_response

logger = logging.getLogger(__name__)
NOSNIFF = (b"x-content-type-options", b"nosniff")  # On every answer: a browser never guesses a type.
# On HTML pages: no frame, no referrer, and a policy that allows only what the page holds. Decision
# records and model cards hold inline styles and data: images; FastAPI's own /docs and /redoc load
# their scripts and styles from jsDelivr and call this server for the schema.
OUR_PAGES = (
    b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
)
API_DOCS = (
    b"default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    b"https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; base-uri 'none'; form-action 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")


def secured(send: Send, path: str) -> Send:
    """`send` with the security headers added to the start of the answer."""

    async def send_secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", ()), NOSNIFF]
            if any(name == b"content-type" and value.startswith(b"text/html") for name, value in headers):
                policy = API_DOCS if path in DOCS_PATHS else OUR_PAGES
                headers += [
                    (b"content-security-policy", policy + b"; frame-ancestors 'none'"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
            message = {**message, "headers": headers}
        await send(message)

    return send_secured


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
    it in the OpenAPI schema, and every other request goes through the app as usual. Every answer,
    either way, carries the security headers (`secured`).
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope["type"] == "http":
            send = secured(send, path)
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
