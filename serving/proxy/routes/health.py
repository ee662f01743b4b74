"""Health as `mlflow models serve` answers it (`/ping`, `/health`, `/version`), readiness and metrics."""

from __future__ import annotations

from typing import Any

import mlflow
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving.contracts import Readiness
from serving.proxy.openapi import errors
from serving.proxy.routes.deps import RuntimeDep, not_running
from serving.proxy.validation import JSON_TYPE

router = APIRouter()
_AS_MLFLOW: dict[int | str, dict[str, Any]] = {200: {"content": {JSON_TYPE: {}}}}


async def ping(runtime: RuntimeDep) -> Response:
    """As `mlflow models serve` answers: 200 and a newline while a model version is served."""
    if runtime.backend is None:
        raise not_running(runtime)
    return Response("\n", media_type=JSON_TYPE)


for path in ("/ping", "/health"):
    router.get(path, response_class=Response, responses={**_AS_MLFLOW, **errors(503)})(ping)


@router.get("/version", response_class=Response, responses=_AS_MLFLOW)
async def version() -> Response:
    """As `mlflow models serve` answers: the MLflow version, as plain text."""
    return Response(mlflow.__version__, media_type=JSON_TYPE)


@router.get("/ready", responses={503: {"model": Readiness, "description": "not ready, and why"}})
async def ready(runtime: RuntimeDep, response: Response) -> Readiness:
    """The backend answers `/ping`, the log store is reachable and the log writer runs."""
    reasons = [
        problem
        for problem in (await runtime.ping_backend(), await runtime.ping_database(), runtime.writer_problem())
        if problem
    ]
    if reasons:
        response.status_code = 503
    version = runtime.backend.info.version if runtime.backend else None
    return Readiness(status="not ready" if reasons else "ready", model_version=version, reasons=reasons)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus metrics of this process (open, like /ready: counts and timings, no data)."""
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
