"""What is served: the version's facts, its latest drift summary and the latest challenger comparison."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from serving.contracts import ChallengerReport, DriftReport, ModelFacts
from serving.openapi import errors
from serving.reports import latest_summary
from serving.routes.deps import Key, RuntimeDep, not_running

router = APIRouter()


@router.get("/model", responses=errors(401, 503))
async def model(_: Key, runtime: RuntimeDep) -> ModelFacts:
    """The served version: registry facts, threshold, holdout metrics, schema and params."""
    if runtime.backend is None:
        raise not_running(runtime)
    return ModelFacts.model_validate(runtime.backend.info.as_json())


@router.get("/drift", responses=errors(401, 404, 503))
async def drift(_: Key, runtime: RuntimeDep) -> DriftReport:
    """The latest drift summary of this model (`python -m monitoring drift`), from MLflow."""
    backend = runtime.backend
    if backend is None or backend.info.run_id is None:
        raise not_running(runtime)
    summary = await asyncio.to_thread(
        latest_summary, runtime.client, model=runtime.settings.model, run_id=backend.info.run_id, kind="drift"
    )
    return DriftReport.model_validate(summary)


@router.get("/challenger", responses=errors(401, 404, 503))
async def challenger(_: Key, runtime: RuntimeDep) -> ChallengerReport:
    """The latest comparison of a challenger with the served versions (`python -m monitoring compare`)."""
    backend = runtime.backend
    if backend is None or backend.info.run_id is None:
        raise not_running(runtime)
    summary = await asyncio.to_thread(
        latest_summary,
        runtime.client,
        model=runtime.settings.model,
        run_id=backend.info.run_id,
        kind="compare",
    )
    return ChallengerReport.model_validate(summary)
