"""The prediction log over HTTP: latest predictions, one request, its waterfall plot, observed outcomes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import HTMLResponse

from logstore import feedback, store
from serving.contracts import DecisionRecord, LoggedRequest, Predictions, Recorded
from serving.documents import decision_record as decision_record_of
from serving.documents.waterfall import render_png
from serving.errors import NotFound, Unavailable
from serving.proxy.openapi import errors
from serving.proxy.routes.deps import Feedback, Reader, RuntimeDep
from serving.proxy.runtime import Runtime

router = APIRouter()


async def _logged_request(runtime: Runtime, request_id: uuid.UUID) -> dict[str, Any]:
    found = await runtime.on_database(store.get_request, request_id=request_id)
    if found is None:
        raise NotFound(
            f"request {request_id} is not in the log: not written yet (rows are written within seconds), "
            "or removed by retention or erasure"
        )
    return found


def _logged_row(found: dict[str, Any], row: int) -> dict[str, Any]:
    """Row `row` of a logged request, or 404."""
    rows = {item["row_index"]: item for item in found["predictions"]}
    if row not in rows:
        raise NotFound(f"request {found['request_id']} has no logged row {row}")
    return rows[row]


async def _waterfall_png(item: dict[str, Any]) -> bytes | None:
    """The waterfall of a logged row, or None when it was scored without explanations."""
    if not item["contributions"] or item["base_value"] is None:
        return None
    return await asyncio.to_thread(
        render_png, contributions=item["contributions"], base_value=item["base_value"],
        score=item["score"], features=item["input"] or {},
    )  # fmt: skip


@router.post(
    "/feedback", status_code=201, responses={200: {"description": "replaced"}, **errors(400, 401, 404, 503)}
)
async def record_feedback(
    _: Feedback, runtime: RuntimeDep, outcome: feedback.Feedback, response: Response
) -> Recorded:
    """Record the observed label of a logged prediction; a second label for a row replaces the first."""
    labels = runtime.backend.info.labels if runtime.backend else None
    if labels is None:
        raise Unavailable("the served model version does not name its labels (model server not running?)")
    [stored] = await runtime.on_database(
        feedback.record, outcomes=[outcome], model_name=runtime.settings.model, labels=labels,
        hmac_key=runtime.settings.hmac_key, source="api",
    )  # fmt: skip
    if stored["replaced"] is None:
        message = "recorded"
    else:
        response.status_code = 200
        message = f"replaced the earlier label {stored['replaced']!r}"
    return Recorded(**stored, message=message)


@router.get("/predictions", responses=errors(400, 401, 503))
async def predictions(
    _: Reader,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    model_version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,  # The column is 32-bit.
) -> Predictions:
    """The latest logged predictions of this model, newest first."""
    rows = await runtime.on_database(
        store.latest_predictions, limit=limit,
        model_name=runtime.settings.model, model_version=model_version,
    )  # fmt: skip
    return Predictions.model_validate({"predictions": rows})


@router.get("/predictions/{request_id}", responses=errors(400, 401, 404, 503))
async def prediction(_: Reader, runtime: RuntimeDep, request_id: uuid.UUID) -> LoggedRequest:
    """One logged request with its predictions."""
    return LoggedRequest.model_validate(await _logged_request(runtime, request_id))


@router.get(
    "/predictions/{request_id}/record",
    responses={200: {"content": {"text/html": {}}}, **errors(400, 401, 404, 503)},
    response_model=DecisionRecord,
)
async def decision_record(
    _: Reader,
    runtime: RuntimeDep,
    request_id: uuid.UUID,
    row: Annotated[int, Query(ge=0)] = 0,
    format: Annotated[Literal["json", "html"], Query()] = "json",
) -> DecisionRecord | HTMLResponse:
    """One decision's record: version and lineage, gates, input, score, reasons; `format=html` to print."""
    found = await _logged_request(runtime, request_id)
    item = _logged_row(found, row)  # Before the registry is asked anything.
    if found["model_version"] is None:
        raise NotFound(f"request {request_id} was not answered by a model version")
    facts = await asyncio.to_thread(
        decision_record_of.version_facts, runtime.client, found["model_name"], found["model_version"]
    )
    record = decision_record_of.build(found, item, facts)
    if format == "json":
        return DecisionRecord.model_validate(record)
    return HTMLResponse(decision_record_of.render(record, await _waterfall_png(item)))


@router.get(
    "/predictions/{request_id}/waterfall.png",
    responses={200: {"content": {"image/png": {}}}, **errors(400, 401, 404, 503)},
    response_class=Response,
)
async def waterfall(
    _: Reader, runtime: RuntimeDep, request_id: uuid.UUID, row: Annotated[int, Query(ge=0)] = 0
) -> Response:
    """A SHAP waterfall plot of one logged row, from its stored contributions."""
    png = await _waterfall_png(_logged_row(await _logged_request(runtime, request_id), row))
    if png is None:
        raise NotFound(f"request {request_id} row {row} was scored without explanations")
    return Response(png, media_type="image/png")
