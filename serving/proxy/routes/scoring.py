"""The scoring routes: MLflow's `/invocations`, and scoring an entity of the entity table by id."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response

from logstore import store
from logstore.records import pseudonym
from serving.errors import BadRequest, NotFound
from serving.proxy.openapi import BY_ID_BODY, INVOCATIONS_BODY, PREDICTIONS, errors
from serving.proxy.routes.deps import get_runtime
from serving.proxy.scoring import Body, read_body, score
from serving.proxy.validation import JSON_TYPE, check_params, media_type, parse
from serving.registry import restore_id

router = APIRouter()
ENTITY_ID_MAX = 256  # The width of the entity table's id column.
BY_ID_BODY_BYTES = 64 * 1024


@router.post(
    "/invocations",
    openapi_extra={"requestBody": INVOCATIONS_BODY},
    responses={**PREDICTIONS, **errors(400, 401, 413, 415, 500, 503, 504)},
)
async def invocations(request: Request) -> Response:
    """MLflow's scoring protocol, unchanged; adds X-Request-ID and X-Model-Version."""
    runtime = get_runtime(request)  # Not a dependency: FastAPI's resolution costs the hot path.

    async def body() -> Body:
        raw = await read_body(request, runtime.settings.max_body_bytes)
        content_type = request.headers.get("content-type", JSON_TYPE)
        backend = runtime.backend
        if backend is None:
            media_type(content_type)
            return Body(raw, content_type)
        payload = await runtime.checker.check(raw, content_type, backend.info.inputs, backend.info.params)
        return Body(raw, content_type, payload)

    return await score(request, runtime, "/invocations", body)


@router.post(
    "/predict/by-id/{entity_id}",
    openapi_extra={"requestBody": BY_ID_BODY},
    responses={**PREDICTIONS, **errors(400, 401, 404, 413, 500, 503, 504)},
)
async def predict_by_id(request: Request, entity_id: str) -> Response:
    """Score an entity from the entity table; an optional JSON body may carry `params`."""
    runtime = get_runtime(request)

    async def body() -> Body:
        raw = await read_body(request, runtime.settings.max_body_bytes)
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
        return Body(json.dumps(document).encode(), JSON_TYPE, document)

    return await score(request, runtime, "/predict/by-id/{entity_id}", body)
