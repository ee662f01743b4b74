"""The comparison's statistics on synthetic answers whose right result is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from monitoring.challenger import CompareThresholds, compare, top_reasons
from registry_scripts.reports import auc_worse, paired_auc_difference, roc_auc

COSTS = {"false_negative": 10.0, "false_positive": 1.0}
RNG = np.random.default_rng(7)


def test_roc_auc_by_ranks_is_sklearns_with_ties() -> None:
    y = RNG.integers(0, 2, 500)
    scores = np.round(RNG.random(500), 1)  # Many ties.
    assert roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_the_bootstrap_finds_no_difference_between_identical_rankings() -> None:
    y = RNG.integers(0, 2, 400)
    scores = RNG.random(400)
    found = paired_auc_difference(y, scores, scores**2, rounds=300, seed=0)  # Same order, other values.
    assert found["difference"] == 0.0 and found["low"] == 0.0 and found["high"] == 0.0


def test_the_bootstrap_interval_holds_a_known_difference() -> None:
    y = np.repeat([0, 1], 1000)
    champion = RNG.random(2000)  # No signal: its AUC is what it is on these rows, near 0.5.
    challenger = y + RNG.random(2000) * 0.5  # Ranks every positive above every negative: AUC 1.
    found = paired_auc_difference(y, champion, challenger, rounds=500, seed=0)
    truth = 1.0 - roc_auc_score(y, champion)
    assert found["difference"] == pytest.approx(truth, abs=1e-12)
    assert found["low"] < truth < found["high"] and found["high"] - found["low"] < 0.1


def test_the_bootstrap_interval_covers_zero_for_two_equally_good_models() -> None:
    y = np.repeat([0, 1], 1000)
    signal = y * 1.0
    covered = 0
    for seed in range(40):
        noise = np.random.default_rng(seed)
        first, second = signal + noise.normal(0, 1, 2000), signal + noise.normal(0, 1, 2000)
        found = paired_auc_difference(y, first, second, rounds=200, seed=seed)
        covered += found["low"] <= 0 <= found["high"]
    assert covered >= 34  # A 95% interval: 38 of 40 expected; fewer than 34 is very unlikely.


def rows(n: int, *, flip: float = 0.0, labelled: bool = False) -> pd.DataFrame:
    """Served and challenger answers on `n` rows; the challenger moves a share `flip` across 0.5."""
    scores = RNG.random(n)
    shadow = scores.copy()
    moved = RNG.random(n) < flip
    shadow[moved] = 1 - shadow[moved]
    contributions = [{"a": 1.0, "b": -0.5, "c": 0.2, "d": 0.01}] * n
    return pd.DataFrame(
        {
            "request_id": [f"r{i // 2}" for i in range(n)], "row_index": [i % 2 for i in range(n)],
            "score": scores, "threshold": 0.5, "contributions": contributions, "upstream_ms": 5.0,
            "shadow_score": shadow, "shadow_threshold": 0.5,
            "shadow_contributions": [{"a": 0.1, "b": 2.0, "c": 0.3, "d": -1.0}] * n,
            "shadow_error": None, "shadow_latency_ms": 7.0,
            "actual": (RNG.random(n) < scores).astype(float) if labelled else np.nan,
        }
    )  # fmt: skip


def test_identical_answers_raise_no_objection() -> None:
    frame = rows(300).assign(
        shadow_score=lambda f: f["score"], shadow_contributions=lambda f: f["contributions"]
    )
    summary = compare(frame, costs=COSTS, thresholds=CompareThresholds())
    assert summary["verdict"] == "no objection" and summary["reasons"] == []
    assert summary["decisions"]["flip_rate"] == 0.0 and summary["scores"]["mean_abs_difference"] == 0.0
    assert summary["top_reasons"] == {"mean_overlap": 1.0, "identical_share": 1.0}
    assert summary["latency_ms"]["challenger"]["p50"] == 7.0 and "realised" not in summary


def test_flips_are_counted_both_ways_and_object_over_the_limit() -> None:
    frame = rows(1000, flip=0.3)
    summary = compare(frame, costs=COSTS, thresholds=CompareThresholds(max_flip_rate=0.1))
    flagged, shadow = frame["score"] >= 0.5, frame["shadow_score"] >= 0.5
    assert summary["decisions"]["flip_rate"] == pytest.approx(float((flagged != shadow).mean()))
    assert summary["decisions"]["flagged_only_by_challenger"] == int((~flagged & shadow).sum())
    assert summary["decisions"]["flagged_only_by_champion"] == int((flagged & ~shadow).sum())
    assert summary["verdict"] == "objection" and "flip rate" in summary["reasons"][0]
    assert len(summary["flipped"]) == 50 and summary["flipped"][0]["reasons"] == ["a", "b", "c"]
    assert summary["flipped"][0]["shadow_reasons"] == ["b", "d", "c"]
    assert summary["top_reasons"]["mean_overlap"] == pytest.approx(2 / 3)


def test_realised_figures_with_outcomes_and_too_little_data() -> None:
    summary = compare(rows(600, labelled=True), costs=COSTS, thresholds=CompareThresholds(bootstrap=200))
    realised = summary["realised"]
    assert realised["champion"]["roc_auc"] == realised["challenger"]["roc_auc"]  # Same scores, no flips.
    assert realised["auc_difference"]["difference"] == 0.0
    assert summary["verdict"] == "no objection"

    errors = rows(150).assign(shadow_error=["boom"] * 10 + [None] * 140)
    summary = compare(errors, costs=COSTS, thresholds=CompareThresholds(min_rows=100))
    assert summary["shadow_errors"] == 10 and summary["verdict"] == "objection"
    summary = compare(rows(50), costs=COSTS, thresholds=CompareThresholds())
    assert summary["verdict"] == "not enough data" and "--min-rows" in summary["reasons"][0]


def test_top_reasons_are_the_largest_absolute_contributions() -> None:
    assert top_reasons({"a": 0.1, "b": -3.0, "c": 2.0, "d": 0.5}) == ["b", "c", "d"]
    assert top_reasons(None) == [] and top_reasons({}) == []


def test_realised_auc_objects_only_when_the_interval_agrees() -> None:
    # Lower by more than the tolerance on a chance draw (the interval reaches 0): no objection.
    assert not auc_worse(-0.02, 0.01, 0.01) and not auc_worse(-0.005, -0.001, 0.01)
    assert auc_worse(-0.02, -0.001, 0.01)
    y = np.repeat([0, 1], 150)
    champion = 1 / (1 + np.exp(-(2 * y + RNG.normal(0, 1, 300))))
    worse = 1 / (1 + np.exp(-(0.5 * y + RNG.normal(0, 1, 300))))
    frame = rows(300, labelled=True).assign(score=champion, shadow_score=worse, actual=y)
    summary = compare(frame, costs=COSTS, thresholds=CompareThresholds(max_flip_rate=1.0, bootstrap=200))
    found = summary["realised"]["auc_difference"]
    assert found["difference"] < -0.01 and found["high"] < 0
    assert summary["verdict"] == "objection" and "interval" in summary["reasons"][0]
