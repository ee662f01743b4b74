"""Report summaries as `python -m monitoring drift` and `compare` log them, and serving reads them back.

Also the realised-AUC comparison that `compare`, the live-shadow gate and a rollout's steps share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.stats import rankdata

Json = Any  # As the report holds it.


def auc_worse(difference: float, high: float, tolerance: float) -> bool:
    """A realised ROC AUC objected to: lower by more than the tolerance, and its 95% interval below 0.

    Both, because on a few hundred labelled rows a retrain as good as the champion often lands more than
    0.01 lower by chance: the paired bootstrap interval tells that draw from a real loss.
    """
    return difference < -tolerance and high < 0


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by ranks (ties count half), the Mann-Whitney form."""
    positives = int(y.sum())
    negatives = len(y) - positives
    ranks = rankdata(scores)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def paired_auc_difference(
    y: np.ndarray, champion: np.ndarray, challenger: np.ndarray, *, rounds: int, seed: int
) -> dict[str, float]:
    """Challenger's AUC minus champion's on the same rows, with a 95% paired percentile bootstrap interval."""
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(rounds):
        pick = rng.integers(0, len(y), len(y))
        sample = y[pick]
        if 0 < sample.sum() < len(sample):  # A resample with one class has no AUC.
            differences.append(roc_auc(sample, challenger[pick]) - roc_auc(sample, champion[pick]))
    low, high = np.percentile(differences, [2.5, 97.5])
    return {
        "difference": roc_auc(y, challenger) - roc_auc(y, champion),
        "low": float(low),
        "high": float(high),
        "rounds": len(differences),
    }


class DriftWindow(BaseModel):
    """The logged times a drift report covers: as asked, and as found."""

    since: str | None
    until: str | None
    first: str
    last: str


class DriftSummary(BaseModel):
    """A drift report's `summary.json`; `run_id`, its MLflow run, is added by whoever reads it back.

    Fields a newer report adds pass through; the ones named here are what the business app reads.
    """

    model_config = ConfigDict(extra="allow")

    run_id: str | None = None  # Not in the file: the run is made after it is written.
    model: str
    version: int
    created_at: str
    window: DriftWindow
    rows: int
    reference_rows: int
    thresholds: dict[str, Json]
    drift: bool
    drifted: list[str]  # Features, "<feature> (explanation)" and "score".
    drifted_features: list[str]
    explanation_drifted_features: list[str]
    features: list[dict[str, Json]]  # Per feature: kind, statistic, p values, PSI, unseen share, drifted.
    scores: dict[str, Json]
    over_time: Json
    explanations: list[dict[str, Json]]
    performance: dict[str, Json]  # Realised performance per model version with outcomes.


class CompareSummary(BaseModel):
    """A comparison's `summary.json`: the served version against the challenger that shadowed it."""

    model_config = ConfigDict(extra="allow")

    run_id: str | None = None  # Not in the file: the run is made after it is written.
    model: str
    champion_version: int
    challenger_version: int
    created_at: str
    window: DriftWindow
    rows: int
    verdict: str  # "no objection", "objection" or "not enough data".
    reasons: list[str]
    shadow_errors: int
    latency_ms: dict[str, Json]
    decisions: dict[str, Json] | None = None  # Absent with not enough data.
    flipped: list[dict[str, Json]] = []  # Rows whose decision flips, with both versions' top reasons.
