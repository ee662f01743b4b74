"""Metrics and the business-cost decision threshold; pure functions of labels and scores."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, roc_auc_score

from training.config import CostConfig


def business_cost(y: np.ndarray, predicted: np.ndarray, costs: CostConfig) -> float:
    """Total cost of the false negatives and false positives of hard predictions."""
    false_negatives = int(np.sum((y == 1) & (predicted == 0)))
    false_positives = int(np.sum((y == 0) & (predicted == 1)))
    return costs.false_negative * false_negatives + costs.false_positive * false_positives


def choose_threshold(y: np.ndarray, scores: np.ndarray, costs: CostConfig) -> float:
    """Threshold t (positive when score >= t) with the lowest total cost on (y, scores)."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_y = scores[order], y[order]
    # Candidate k flags the k highest scores; costs for every k at once by cumulative sums.
    true_pos = np.concatenate([[0], np.cumsum(sorted_y)])
    false_pos = np.concatenate([[0], np.cumsum(1 - sorted_y)])
    total = costs.false_negative * (sorted_y.sum() - true_pos) + costs.false_positive * false_pos
    # Only cut between distinct scores: a threshold cannot split tied rows.
    distinct = np.concatenate([[True], sorted_scores[1:] != sorted_scores[:-1], [True]])
    total = np.where(distinct, total, np.inf)
    best = int(np.argmin(total))
    if best == 0:
        return float(min(1.0, np.nextafter(sorted_scores[0], np.inf)))
    if best == len(scores):
        return float(sorted_scores[-1])
    # Midway between the last flagged and the first unflagged score generalises best.
    return float((sorted_scores[best - 1] + sorted_scores[best]) / 2)


def classification_metrics(
    y: np.ndarray, scores: np.ndarray, threshold: float, costs: CostConfig
) -> dict[str, float]:
    """Ranking, calibration and decision metrics at one threshold."""
    predicted = (scores >= threshold).astype(np.int64)
    cost = business_cost(y, predicted, costs)
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "pr_auc": float(average_precision_score(y, scores)),
        "brier": float(brier_score_loss(y, scores)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "business_cost": float(cost),
        "business_cost_per_case": float(cost / len(y)),
        "positive_rate": float(predicted.mean()),
    }
