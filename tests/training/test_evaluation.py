"""The business-cost threshold is truly cost-minimal; metrics are what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import CostConfig
from training.evaluation import business_cost, choose_threshold, classification_metrics


@pytest.mark.parametrize(("fn", "fp"), [(1.0, 1.0), (5.0, 1.0), (1.0, 7.0), (20000.0, 3000.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_is_no_worse_than_any_candidate(fn: float, fp: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    scores = np.clip(0.3 * y + rng.normal(0.35, 0.2, 300), 0, 1).round(2)  # ties on purpose
    costs = CostConfig(false_negative=fn, false_positive=fp)
    chosen = business_cost(y, (scores >= choose_threshold(y, scores, costs)).astype(int), costs)
    candidates = np.concatenate([np.unique(scores), [1.01]])
    best = min(business_cost(y, (scores >= t).astype(int), costs) for t in candidates)
    assert chosen == best


def test_costly_misses_push_the_threshold_down() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    scores = np.clip(0.4 * y + rng.uniform(0, 0.6, 500), 0, 1)
    cheap_miss = choose_threshold(y, scores, CostConfig(false_negative=1, false_positive=10))
    costly_miss = choose_threshold(y, scores, CostConfig(false_negative=10, false_positive=1))
    assert costly_miss < cheap_miss


def test_flag_nobody_when_false_alarms_dominate() -> None:
    y = np.array([0, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    threshold = choose_threshold(y, scores, CostConfig(false_negative=1, false_positive=100))
    assert (scores >= threshold).sum() == 0


def test_metrics_at_threshold() -> None:
    y = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.6, 0.4, 0.9])
    metrics = classification_metrics(y, scores, 0.5, CostConfig(false_negative=10, false_positive=1))
    assert metrics["roc_auc"] == pytest.approx(0.75)
    assert metrics["business_cost"] == 11.0  # one miss, one false alarm
    assert metrics["business_cost_per_case"] == pytest.approx(2.75)
    assert metrics["f1"] == pytest.approx(0.5)
