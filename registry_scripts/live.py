"""A rollout step's live figures, read from the prediction log: the canary against production."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, Select, and_, case, func, select

from logstore.store import latest_outcome
from logstore.tables import inference_outcomes, inference_predictions, inference_requests, shadow_predictions
from registry_scripts.reports import auc_worse, paired_auc_difference, roc_auc

CHUNK = 5000
BINS = 10
BOOTSTRAP_ROUNDS = 1000


@dataclass(frozen=True)
class Figures:
    """What the log says of one step, since it began."""

    canary_requests: int
    canary_errors: int
    production_requests: int
    production_errors: int
    canary_p99_ms: float | None
    production_p99_ms: float | None
    rows: int  # Canary rows production also scored (the mirror): the rows compared.
    flips: int
    to_positive: int  # Flagged (or approved) by the canary, not by production.
    to_negative: int
    canary_positive: float | None  # Share of the compared rows each version flags.
    production_positive: float | None
    score_psi: float | None
    # Compared rows whose outcome has arrived, and realised ROC AUC on them (with both classes present):
    # the canary's minus production's, with its paired 95% bootstrap interval.
    labelled: int = 0
    canary_auc: float | None = None
    production_auc: float | None = None
    auc_difference_low: float | None = None
    auc_difference_high: float | None = None

    @property
    def auc_difference(self) -> float | None:
        """The canary's realised ROC AUC minus production's, on the same labelled rows."""
        if self.canary_auc is None or self.production_auc is None:
            return None
        return self.canary_auc - self.production_auc

    @property
    def flip_rate(self) -> float | None:
        """The share of compared rows whose decision differs."""
        return self.flips / self.rows if self.rows else None

    def as_dict(self) -> dict[str, Any]:
        """For the audit entry."""
        return {**asdict(self), "flip_rate": self.flip_rate, "auc_difference": self.auc_difference}

    def describe(self) -> str:
        """One line for the progress output."""

        def show(value: float | None, form: str) -> str:
            return "n/a" if value is None else format(value, form)

        return (
            f"{self.canary_requests} requests on the canary ({self.canary_errors} errors), "
            f"{self.production_requests} on production ({self.production_errors} errors); "
            f"p99 {show(self.canary_p99_ms, '.0f')} / {show(self.production_p99_ms, '.0f')} ms; "
            f"{self.rows} rows compared: flip rate {show(self.flip_rate, '.3f')} "
            f"({self.to_positive} to positive, {self.to_negative} to negative), score PSI "
            f"{show(self.score_psi, '.3f')}, positive share {show(self.canary_positive, '.3f')} / "
            f"{show(self.production_positive, '.3f')}; {self.labelled} labelled"
            + (
                f": ROC AUC {show(self.canary_auc, '.3f')} / {show(self.production_auc, '.3f')}"
                if self.labelled
                else ""
            )
        )


def psi(expected: np.ndarray, actual: np.ndarray) -> float | None:
    """Population stability index of `actual` against `expected`, on the deciles of `expected`."""
    if len(expected) == 0 or len(actual) == 0:
        return None
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, BINS + 1)[1:-1]))
    shares = [
        np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1) / len(values)
        for values in (expected, actual)
    ]
    floor = 1e-4  # An empty bin counts as almost empty, as in the drift report.
    e, a = (np.clip(share, floor, None) for share in shares)
    return float(np.sum((a - e) * np.log(a / e)))


def _p99(engine: Engine, model: str, version: int, since: datetime) -> float | None:
    query = select(inference_requests.c.total_ms).where(
        inference_requests.c.model_name == model,
        inference_requests.c.model_version == version,
        inference_requests.c.received_at >= since,
        inference_requests.c.status_code == 200,
    )
    with engine.connect() as connection:
        values = np.fromiter((row[0] for row in connection.execute(query)), dtype=np.float64)
    return float(np.percentile(values, 99)) if len(values) else None


def _compared(model: str, canary: int, production: int, since: datetime) -> Select[Any]:
    """The canary's rows since `since` that production also scored (the mirror), without error."""
    requests, predictions, shadows = inference_requests.c, inference_predictions.c, shadow_predictions.c
    return (
        select()
        .select_from(inference_predictions)
        .join(inference_requests, predictions.request_id == requests.request_id)
        .join(
            shadow_predictions,
            and_(
                shadows.request_id == predictions.request_id,
                shadows.row_index == predictions.row_index,
                shadows.model_version == production,
            ),
        )
        .where(
            requests.model_name == model,
            requests.model_version == canary,
            requests.received_at >= since,
            shadows.error.is_(None),
            shadows.score.is_not(None),
        )
    )


def compared_rows(engine: Engine, *, model: str, canary: int, production: int, since: datetime) -> int:
    """How many rows the step has compared so far: what the controller waits on, one count a poll."""
    with engine.connect() as connection:
        query = _compared(model, canary, production, since).add_columns(func.count())
        return int(connection.execute(query).scalar_one())


def figures(engine: Engine, *, model: str, canary: int, production: int, since: datetime) -> Figures:
    """The step's figures: requests, errors and p99 per arm; flips, PSI, shares and AUC on mirrored rows."""
    requests = inference_requests.c
    counted = (
        select(
            requests.model_version,
            func.count(),
            func.coalesce(func.sum(case((requests.status_code >= 500, 1), else_=0)), 0),
        )
        .where(requests.model_name == model, requests.received_at >= since)
        .group_by(requests.model_version)
    )
    predictions, shadows = inference_predictions.c, shadow_predictions.c
    actual = latest_outcome(
        inference_outcomes.c.positive, request_id=predictions.request_id, row_index=predictions.row_index
    )
    compared = _compared(model, canary, production, since).add_columns(
        predictions.score, predictions.threshold, shadows.score, shadows.threshold, actual
    )
    with engine.connect() as connection:
        per_arm = {row[0]: (int(row[1]), int(row[2])) for row in connection.execute(counted)}
        result = connection.execution_options(yield_per=CHUNK).execute(compared)
        pairs = np.array(
            [(*row[:4], np.nan if row[4] is None else float(row[4])) for row in result], dtype=np.float64
        ).reshape(-1, 5)
    canary_scores, production_scores = pairs[:, 0], pairs[:, 2]
    canary_flags, production_flags = canary_scores >= pairs[:, 1], production_scores >= pairs[:, 3]
    rows = len(pairs)
    score_psi = psi(production_scores, canary_scores)
    return Figures(
        canary_requests=per_arm.get(canary, (0, 0))[0],
        canary_errors=per_arm.get(canary, (0, 0))[1],
        production_requests=per_arm.get(production, (0, 0))[0],
        production_errors=per_arm.get(production, (0, 0))[1],
        canary_p99_ms=_p99(engine, model, canary, since),
        production_p99_ms=_p99(engine, model, production, since),
        rows=rows,
        flips=int(np.sum(canary_flags != production_flags)),
        to_positive=int(np.sum(canary_flags & ~production_flags)),
        to_negative=int(np.sum(~canary_flags & production_flags)),
        canary_positive=float(canary_flags.mean()) if rows else None,
        production_positive=float(production_flags.mean()) if rows else None,
        score_psi=None if score_psi is None or math.isnan(score_psi) else score_psi,
        **_realised(pairs[:, 4], canary_scores, production_scores),
    )


def _realised(actual: np.ndarray, canary: np.ndarray, production: np.ndarray) -> dict[str, Any]:
    """Realised ROC AUC of both arms on the labelled rows, when both classes are there."""
    labelled = ~np.isnan(actual)
    y = actual[labelled].astype(int)
    if not 0 < y.sum() < len(y):
        return {"labelled": int(labelled.sum())}
    found = paired_auc_difference(y, production[labelled], canary[labelled], rounds=BOOTSTRAP_ROUNDS, seed=0)
    canary_auc = roc_auc(y, canary[labelled])
    return {
        "labelled": len(y),
        "canary_auc": canary_auc,
        "production_auc": canary_auc - found["difference"],
        "auc_difference_low": found["low"],
        "auc_difference_high": found["high"],
    }


LIMITS: dict[str, float | None] = {
    "max_flip_rate": 0.15,
    "max_score_psi": None,
    "max_positive_shift": None,
    "max_error_rate": 0.01,
    "max_p99_ratio": 2.0,
    "min_labelled": 100,  # As the live-shadow gate: realised AUC is judged from this many labelled rows.
    "auc_tolerance": 0.01,
}


def judge(found: Figures, limits: dict[str, float | None]) -> list[str]:
    """What is wrong with a step's figures under the limits (None: not judged); empty when it passes."""
    problems = []
    within = {key: math.inf if value is None else value for key, value in limits.items()}
    if found.canary_requests:
        canary_rate = found.canary_errors / found.canary_requests
        production_rate = (
            found.production_errors / found.production_requests if found.production_requests else 0
        )
        if canary_rate - production_rate > within["max_error_rate"]:
            problems.append(
                f"error rate {canary_rate:.3f} against production's {production_rate:.3f} "
                f"(more than {within['max_error_rate']} apart)"
            )
    if found.canary_p99_ms is not None and found.production_p99_ms:
        ratio = found.canary_p99_ms / found.production_p99_ms
        if ratio > within["max_p99_ratio"]:
            problems.append(f"p99 latency {ratio:.2f} times production's (over {within['max_p99_ratio']})")
    if found.flip_rate is not None and found.flip_rate > within["max_flip_rate"]:
        problems.append(f"flip rate {found.flip_rate:.3f} over {within['max_flip_rate']}")
    if found.score_psi is not None and found.score_psi > within["max_score_psi"]:
        problems.append(f"score PSI {found.score_psi:.3f} over {within['max_score_psi']}")
    if found.canary_positive is not None and found.production_positive is not None:
        shift = found.canary_positive - found.production_positive
        if abs(shift) > within["max_positive_shift"]:
            problems.append(
                f"positive share moved by {shift:+.3f} (more than {within['max_positive_shift']})"
            )
    auc, high = found.auc_difference, found.auc_difference_high
    if (
        found.labelled >= within["min_labelled"]
        and auc is not None
        and high is not None
        and auc_worse(auc, high, within["auc_tolerance"])
    ):
        problems.append(
            f"realised ROC AUC {auc:+.4f} against production's on "
            f"{found.labelled} labelled rows, 95% interval up to {found.auc_difference_high:+.4f} "
            f"(tolerance {within['auc_tolerance']})"
        )
    return problems
