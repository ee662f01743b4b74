"""The drift statistics as pure functions: known values, the correction, each reason to flag."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import (
    Thresholds,
    categorical_psi,
    explanation_drift,
    feature_drift,
    numeric_psi,
    rate_over_time,
    score_drift,
)
from monitoring.performance import realised

RNG = np.random.default_rng(7)


def test_psi_is_zero_for_the_same_sample_and_grows_with_a_shift() -> None:
    sample = RNG.normal(size=5000)
    assert numeric_psi(sample, sample, 10) == pytest.approx(0.0, abs=1e-9)
    assert numeric_psi(sample, sample + 0.2, 10) < 0.1 < numeric_psi(sample, sample + 1.0, 10)
    assert numeric_psi(np.ones(100), np.ones(50), 10) == pytest.approx(0.0, abs=1e-9)  # Constant reference.


def test_categorical_psi_has_the_textbook_value() -> None:
    reference = pd.Series(["a"] * 50 + ["b"] * 50)
    current = pd.Series(["a"] * 80 + ["b"] * 20)
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert categorical_psi(reference, current) == pytest.approx(expected)


def test_feature_drift_flags_exactly_the_shifted_features_with_their_reasons() -> None:
    n = 2000
    reference = pd.DataFrame(
        {
            "income": RNG.lognormal(8, 0.5, n),
            "age": RNG.integers(20, 60, n),
            "overtime": RNG.choice(["Yes", "No"], n, p=[0.3, 0.7]),
            "role": RNG.choice(["a", "b", "c"], n),
        }
    )
    current = reference.sample(600, random_state=1).reset_index(drop=True)
    current["income"] *= 1.4
    current.loc[: len(current) // 2, "overtime"] = "Yes"
    current.loc[:80, "age"] = np.nan
    results = {
        r.feature: r for r in feature_drift(reference, current, unseen={"role": 0.1}, thresholds=Thresholds())
    }
    assert {name for name, r in results.items() if r.drifted} == {"income", "overtime", "age", "role"}
    assert results["income"].test == "ks" and results["overtime"].test == "chi-square"
    assert any("missing" in reason for reason in results["age"].reasons)
    assert results["role"].reasons == ["unseen categories in 10.0% of rows"]
    assert results["income"].p_adjusted == pytest.approx(min(1.0, results["income"].p_value * 4))


def test_no_drift_on_a_sample_of_the_reference_itself() -> None:
    reference = pd.DataFrame({"x": RNG.normal(size=3000), "c": RNG.choice(list("abcd"), 3000)})
    current = reference.sample(500, random_state=3)
    assert not any(r.drifted for r in feature_drift(reference, current, unseen={}, thresholds=Thresholds()))


def test_score_and_explanation_drift() -> None:
    scores = RNG.beta(2, 5, 2000)
    assert not score_drift(scores, scores[:500], Thresholds())["drifted"]
    assert score_drift(scores, np.clip(scores + 0.2, 0, 1), Thresholds())["drifted"]
    reference = {name: 0.1 for name in "abcdefghij"}
    stable = [{name: (-1) ** i * 0.1 for i, name in enumerate(reference)}] * 10
    moved = [{**stable[0], "a": -0.3}] * 10  # a: from a tenth of the mean |SHAP| to a quarter.
    assert not any(e["drifted"] for e in explanation_drift(reference, stable, Thresholds()))
    flagged = [e["feature"] for e in explanation_drift(reference, moved, Thresholds()) if e["drifted"]]
    assert flagged == ["a"]  # The others' shares fall from 0.1 to 0.083: too little to flag.
    assert explanation_drift(reference, [{"a": 1.0}], Thresholds()) == []  # top_k rows are left out.


def test_rates_over_time_and_realised_performance() -> None:
    times = pd.Series(pd.date_range("2026-11-01", periods=60, freq="min", tz="UTC"))
    rates = rate_over_time(times, pd.Series([True, False] * 30), pd.Series([0.5] * 60))
    assert [r["rows"] for r in rates] == [60] and rates[0]["positive_rate"] == 0.5
    frame = pd.DataFrame(
        {
            "received_at": times,
            "score": np.linspace(0.01, 0.99, 60),
            "actual": [0.0] * 30 + [1.0] * 30,
            "flagged": [False] * 25 + [True] * 35,
        }
    )
    figures = realised(frame, {"false_negative": 10.0, "false_positive": 1.0})
    assert figures["labelled"] == 60 and figures["roc_auc"] == 1.0
    assert figures["business_cost_per_case"] == pytest.approx(5 / 60)  # 5 false positives, no misses.
    assert len(figures["periods"]) == 1 and sum(b["rows"] for b in figures["calibration"]) == 60
