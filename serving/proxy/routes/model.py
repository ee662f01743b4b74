"""What is served: the version's facts, its latest drift summary and the latest challenger comparison."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import HTMLResponse

from registry_scripts import live
from serving.contracts import ChallengerReport, DriftReport, ModelFacts, Rollout
from serving.documents import model_card
from serving.documents.reports import latest_summary
from serving.errors import NotFound
from serving.proxy.openapi import errors
from serving.proxy.routes.deps import Reader, RuntimeDep, not_running

router = APIRouter()


@router.get("/model", responses=errors(401, 503))
async def model(_: Reader, runtime: RuntimeDep) -> ModelFacts:
    """The served version: registry facts, threshold, holdout metrics, schema and params."""
    if runtime.backend is None:
        raise not_running(runtime)
    canary = runtime.canary.supervisor.backend if runtime.canary.active else None
    rollout = {"version": canary.info.version, "share": runtime.canary.share} if canary else None
    return ModelFacts.model_validate(
        {**runtime.backend.info.as_json(), "model_card": "/model/card", "canary": rollout}
    )


@router.get("/rollout", responses=errors(401, 404, 503))
async def rollout(_: Reader, runtime: RuntimeDep) -> Rollout:
    """The rollout in progress (`registry_scripts rollout`): its plan, and its figures from the log."""
    plan = runtime.canary.plan
    if plan is None:
        raise NotFound(f"no rollout of {runtime.settings.model} is in progress")
    found = await runtime.on_database(
        live.figures, model=runtime.settings.model, canary=plan.version, production=plan.production,
        since=datetime.fromisoformat(plan.step_started_at),
    )  # fmt: skip
    return Rollout(
        **plan.model_dump(include={"version", "production", "steps", "warming", "started_at", "by"}),
        step_started_at=plan.step_started_at, share=plan.share, step=plan.step + 1, passed=plan.figures,
        this_step=found.as_dict(),
    )  # fmt: skip


@router.get(
    "/model/card",
    responses={200: {"content": {"text/html": {}, "text/markdown": {}}}, **errors(400, 401, 404, 503)},
    response_class=HTMLResponse,
)
async def card(
    _: Reader, runtime: RuntimeDep, format: Annotated[Literal["html", "md"], Query()] = "html"
) -> Response:
    """The served version's model card (training's), with its promotion history; `format=md` for Markdown."""
    backend = runtime.backend
    if backend is None or backend.info.run_id is None:
        raise not_running(runtime)
    info, run_id = backend.info, backend.info.run_id
    text = await asyncio.to_thread(
        model_card.card, runtime.client, name=info.name, version=info.version, run_id=run_id, kind=format
    )
    if format == "md":
        return Response(text, media_type="text/markdown; charset=utf-8")
    return HTMLResponse(text)


@router.get("/drift", responses=errors(401, 404, 503))
async def drift(_: Reader, runtime: RuntimeDep) -> DriftReport:
    """The latest drift summary of this model (`python -m monitoring drift`), from MLflow."""
    backend = runtime.backend
    if backend is None or backend.info.run_id is None:
        raise not_running(runtime)
    summary = await asyncio.to_thread(
        latest_summary, runtime.client, model=runtime.settings.model, run_id=backend.info.run_id, kind="drift"
    )
    return DriftReport.model_validate(summary)


@router.get("/challenger", responses=errors(401, 404, 503))
async def challenger(_: Reader, runtime: RuntimeDep) -> ChallengerReport:
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
