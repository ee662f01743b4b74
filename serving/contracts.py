"""The bodies the proxy answers, as types: the OpenAPI schema and the fuzz test check them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, PlainSerializer

from registry_scripts.reports import CompareSummary, DriftSummary

# As the log store gives it back, offset and all (`+00:00`, not pydantic's `Z`): answers stay as before.
Moment = Annotated[datetime, PlainSerializer(lambda moment: moment.isoformat(), return_type=str)]
Json = Any  # A JSON column, answered as stored.


class Labels(BaseModel):
    """The two labels in the dataset's words."""

    negative: str
    positive: str


class UseCase(BaseModel):
    """The model's own words: its use case and its target."""

    name: str | None
    target: str | None


class Canary(BaseModel):
    """The version a rollout puts on a share of the people scored."""

    version: int
    share: float  # Percent of people.


class Rollout(BaseModel):
    """`GET /rollout`: the rollout in progress, each passed step's figures and the step in hand's so far."""

    version: int
    production: int
    share: float  # Percent of people, as the proxies route now (0 while the canary warms up).
    step: int  # From 1.
    steps: list[float]
    warming: bool
    started_at: str
    step_started_at: str
    by: str
    passed: list[dict[str, Json]]  # As the audit entry will hold them.
    this_step: dict[str, Json]  # `registry_scripts.live.Figures`, with its flip rate.


class ModelFacts(BaseModel):
    """`GET /model`: the served version's registry facts, threshold, holdout metrics, schema and params."""

    name: str
    version: int
    served_as: str
    stage: str | None
    aliases: list[str]
    run_id: str | None
    threshold: float | None
    metrics: dict[str, float]
    id_column: str | None
    input_schema: list[dict[str, Json]]
    params: list[dict[str, Json]]
    labels: Labels | None
    features: dict[str, Json] | None
    use_case: UseCase | None
    model_card: str  # Where its model card is: `GET /model/card` (HTML, or `?format=md`).
    canary: Canary | None = None  # A rollout in progress: the version `@canary` names and its share.


class Readiness(BaseModel):
    """`GET /ready`: ready, or why not."""

    status: str
    model_version: int | None
    reasons: list[str]


class LoggedPrediction(BaseModel):
    """One logged prediction with its request's time and model version (`GET /predictions`)."""

    request_id: uuid.UUID
    row_index: int
    received_at: Moment
    model_name: str
    model_version: int | None
    entity_id: str | None
    score: float
    prediction: str
    threshold: float
    base_value: float | None
    contributions: Json
    unseen_categories: Json
    reasons: Json = None
    input: Json


class Predictions(BaseModel):
    """`GET /predictions`: the latest logged predictions, newest first."""

    predictions: list[LoggedPrediction]


class PredictionRow(BaseModel):
    """One row of `inference_predictions`."""

    request_id: uuid.UUID
    row_index: int
    entity_id: str | None
    input: Json
    score: float
    prediction: str
    threshold: float
    base_value: float | None
    contributions: Json
    unseen_categories: Json
    reasons: Json = None


class LoggedRequest(BaseModel):
    """`GET /predictions/{request_id}`: one row of `inference_requests` and its predictions."""

    request_id: uuid.UUID
    received_at: Moment
    key_id: str | None
    endpoint: str
    model_name: str
    model_version: int | None
    model_target: str
    status_code: int
    total_ms: float
    upstream_ms: float | None
    n_rows: int
    error: str | None
    client_request_id: uuid.UUID | None
    input_error: str | None
    batch_requests: int | None
    batch_rows: int | None
    queue_ms: float | None
    predictions: list[PredictionRow]


class Recorded(BaseModel):
    """`POST /feedback`: the outcome as stored, and the label it replaced."""

    request_id: str
    row: int
    model_version: int | None
    predicted: str
    label: str
    replaced: str | None
    message: str


class ChallengerReport(CompareSummary):
    """`GET /challenger`: the latest comparison's summary and its run (`python -m monitoring compare`)."""

    run_id: str


class DriftReport(DriftSummary):
    """`GET /drift`: the latest drift report's summary and its MLflow run (`python -m monitoring drift`)."""

    run_id: str


class DecisionModel(BaseModel):
    """Which version decided, the run, data and code that made it, and the gates it passed into Production."""

    name: str
    version: int
    run_id: str | None
    source: str | None
    dataset_sha256: str | None
    git_commit: str | None
    promotion: Json  # The audit entry of its latest promotion to Production (at, by, reason, gates), or null.
    gates_verdict: str | None  # "passed", "forced past <gates>", or null when it was never gated.


class DecisionRecord(BaseModel):
    """`GET /predictions/{request_id}/record`: everything needed to explain and reproduce one decision."""

    request_id: uuid.UUID
    row: int
    decided_at: str
    model: DecisionModel
    entity_id: str | None
    input: Json
    score: float
    threshold: float
    decision: str
    base_value: float | None
    contributions: Json
    reasons: Json
