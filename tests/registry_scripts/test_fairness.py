"""Fairness by group: fairlearn's figures against a hand computation, and the four-fifths flag."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from registry_scripts.fairness import Attribute, FairnessPolicy, assess, band_labels, groups, metric_key


def policy(**changes: object) -> FairnessPolicy:
    return FairnessPolicy.model_validate({"attributes": {"group": {}}, "min_group_rows": 1, **changes})


def by_name(summary: dict[str, object], attribute: str) -> dict[str, dict[str, object]]:
    item = next(i for i in summary["attributes"] if i["attribute"] == attribute)  # type: ignore[attr-defined]
    return {row["group"]: row for row in item["groups"]}


def test_figures_equal_a_hand_computation_on_a_tiny_set() -> None:
    frame = pd.DataFrame({"group": list("AAAAABBBBB")})
    decisions = np.array([1, 1, 1, 0, 0, 1, 0, 0, 0, 0])
    actual = np.array([1, 1, 0, 0, 1, 1, 0, 1, 0, 0], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.9, 0.3, 0.1, 0.2, 0.4])
    summary = assess(frame, decisions=decisions, scores=scores, actual=actual, policy=policy(), source="t")
    rows = by_name(summary, "group")
    # A flags 3 of 5; of its 3 positives 2 are flagged, of its 2 negatives 1.
    assert rows["A"]["selection_rate"] == pytest.approx(3 / 5)
    assert rows["A"]["true_positive_rate"] == pytest.approx(2 / 3)
    assert rows["A"]["false_positive_rate"] == pytest.approx(1 / 2)
    # Positives score 0.9, 0.8, 0.6; negatives 0.7, 0.2: 5 of the 6 pairs ranked right.
    assert rows["A"]["roc_auc"] == pytest.approx(5 / 6)
    assert rows["B"]["selection_rate"] == pytest.approx(1 / 5)
    assert rows["B"]["true_positive_rate"] == pytest.approx(1 / 2)
    assert rows["B"]["false_positive_rate"] == pytest.approx(0.0)
    # Positives 0.9, 0.1; negatives 0.3, 0.2, 0.4: 3 of the 6 pairs ranked right.
    assert rows["B"]["roc_auc"] == pytest.approx(3 / 6)
    item = summary["attributes"][0]
    assert item["demographic_parity_ratio"] == pytest.approx((1 / 5) / (3 / 5))
    assert item["equalized_odds_difference"] == pytest.approx(max(2 / 3 - 1 / 2, 1 / 2 - 0))
    assert item["flagged"] and summary["flagged"] == ["group"]
    assert summary["rows"] == 10 and summary["labelled"] == 10


def synthetic(bias: float, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Two groups with the same risk; the model adds `bias` to one group's log-odds."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, 4000)
    risk = rng.normal(0.0, 1.0, 4000)
    actual = (rng.random(4000) < 1 / (1 + np.exp(-risk))).astype(float)
    scores = 1 / (1 + np.exp(-(risk + bias * group)))
    frame = pd.DataFrame({"group": np.where(group == 1, "one", "zero")})
    return frame, (scores >= 0.5).astype(np.int64), scores, actual


def test_the_four_fifths_flag_fires_on_a_biased_model_and_not_on_a_fair_one() -> None:
    frame, decisions, scores, actual = synthetic(bias=1.5)
    biased = assess(frame, decisions=decisions, scores=scores, actual=actual, policy=policy(), source="t")
    assert biased["flagged"] == ["group"]
    assert biased["attributes"][0]["demographic_parity_ratio"] < 0.8
    frame, decisions, scores, actual = synthetic(bias=0.0)
    fair = assess(frame, decisions=decisions, scores=scores, actual=actual, policy=policy(), source="t")
    assert fair["flagged"] == []
    assert fair["attributes"][0]["demographic_parity_ratio"] > 0.9
    assert fair["attributes"][0]["equalized_odds_difference"] < 0.1


def test_the_selected_decision_can_be_the_favourable_not_flagged_one() -> None:
    frame = pd.DataFrame({"group": list("AAAABBBB")})
    decisions = np.array([1, 1, 0, 0, 1, 0, 0, 0])  # A flagged 1/2, B 1/4: approved 1/2 and 3/4.
    nothing = np.full(8, np.nan)
    flagged = assess(
        frame, decisions=decisions, scores=decisions * 1.0, actual=nothing, policy=policy(), source="t"
    )
    negative = policy(selected="negative")
    approved = assess(
        frame, decisions=decisions, scores=decisions * 1.0, actual=nothing, policy=negative, source="t"
    )
    assert flagged["attributes"][0]["demographic_parity_ratio"] == pytest.approx(0.5)
    assert approved["attributes"][0]["demographic_parity_ratio"] == pytest.approx((1 / 2) / (3 / 4))
    assert by_name(approved, "group")["B"]["selection_rate"] == pytest.approx(3 / 4)
    # Without outcomes: rates of decisions only, no error rates, no equalized odds.
    assert approved["labelled"] == 0 and approved["attributes"][0]["equalized_odds_difference"] is None
    assert by_name(approved, "group")["A"]["true_positive_rate"] is None


def test_small_groups_are_shown_but_not_counted_and_undefined_rates_are_none() -> None:
    frame = pd.DataFrame({"group": ["A"] * 30 + ["B"] * 30 + ["C"] * 3})
    decisions = np.array([1] * 15 + [0] * 15 + [1] * 12 + [0] * 18 + [0] * 3)
    actual = np.array([1.0] * 60 + [0.0] * 3)
    summary = assess(
        frame, decisions=decisions, scores=decisions * 1.0, actual=actual, policy=policy(min_group_rows=20),
        source="t",
    )  # fmt: skip
    rows = by_name(summary, "group")
    assert rows["C"]["counted"] is False and rows["C"]["selection_rate"] == 0.0  # Would make the ratio 0.
    assert summary["attributes"][0]["demographic_parity_ratio"] == pytest.approx((12 / 30) / (15 / 30))
    # Every labelled row of A is positive: no false positive rate, and equalized odds cannot be measured.
    assert rows["A"]["false_positive_rate"] is None and rows["A"]["true_positive_rate"] == pytest.approx(0.5)
    assert rows["C"]["true_positive_rate"] is None
    assert summary["attributes"][0]["equalized_odds_difference"] is None


def test_bands_name_their_ranges_and_missing_values() -> None:
    attribute = Attribute(bands=(30, 40, 50))
    assert band_labels(attribute.bands) == ["under 30", "30-39", "40-49", "50 and over"]
    ages = pd.Series([18, 29, 30, 39.5, 40, 50, 77, None])
    assert groups(ages, attribute).tolist() == [
        "under 30", "under 30", "30-39", "30-39", "40-49", "50 and over", "50 and over", "missing",
    ]  # fmt: skip
    assert groups(pd.Series(["x", None]), Attribute()).tolist() == ["x", "missing"]


def test_an_attribute_the_rows_lack_is_unavailable_not_an_error() -> None:
    both = policy(attributes={"group": {}, "Age": {"bands": [30]}})
    frame = pd.DataFrame({"group": list("AABB")})
    summary = assess(
        frame, decisions=np.array([1, 0, 1, 0]), scores=np.array([0.9, 0.1, 0.8, 0.2]),
        actual=np.full(4, np.nan), policy=both, source="t",
    )  # fmt: skip
    assert summary["unavailable"] == ["Age"] and [i["attribute"] for i in summary["attributes"]] == ["group"]


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"attributes": {}}, "attributes"),
        ({"attributes": {"Age": {"bands": [40, 30]}}}, "attributes.Age.bands"),
        ({"attributes": {"g": {}}, "min_ratio": 1.5}, "min_ratio"),
        ({"attributes": {"g": {}}, "gate": "block"}, "gate"),
        ({"attributes": {"g": {}}, "selected": "yes"}, "selected"),
    ],
)
def test_a_bad_policy_names_its_field(content: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FairnessPolicy.model_validate(content)
    assert ".".join(str(part) for part in caught.value.errors()[0]["loc"]) == field


def test_metric_names_keep_what_mlflow_accepts() -> None:
    assert metric_key("Age", "demographic_parity_ratio") == "Age.demographic_parity_ratio"
    assert metric_key("Marital status (self-reported)?", "x") == "Marital status _self-reported__.x"


def test_figures_are_fairlearns_on_a_random_set_with_missing_and_small_groups() -> None:
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    rng = np.random.default_rng(3)
    n = 5000
    frame = pd.DataFrame(
        {
            "group": rng.choice(
                np.array(["a", "b", "c", "tiny", None], dtype=object), n, p=[0.4, 0.3, 0.26, 0.003, 0.037]
            )
        }
    )
    decisions = (rng.random(n) < 0.3).astype(np.int64)
    scores = rng.random(n)
    actual = np.where(rng.random(n) < 0.4, (rng.random(n) < 0.3).astype(float), np.nan)
    for selected in ("positive", "negative"):
        chosen = decisions if selected == "positive" else 1 - decisions
        found = assess(frame, decisions=decisions, scores=scores, actual=actual,
                       policy=policy(selected=selected, min_group_rows=20), source="t")  # fmt: skip
        rows = by_name(found, "group")
        sensitive = groups(frame["group"], Attribute()).to_numpy(dtype=object)
        rates = MetricFrame(
            metrics=selection_rate, y_true=chosen, y_pred=chosen, sensitive_features=sensitive
        )
        assert {g: r["selection_rate"] for g, r in rows.items()} == rates.by_group.to_dict()
        labelled = ~np.isnan(actual)
        y, flagged, where = actual[labelled].astype(int), decisions[labelled], sensitive[labelled]
        for metric, key in (
            (true_positive_rate, "true_positive_rate"),
            (false_positive_rate, "false_positive_rate"),
        ):
            expected = MetricFrame(
                metrics=metric, y_true=y, y_pred=flagged, sensitive_features=where
            ).by_group
            assert {g: rows[g][key] for g in expected.index} == expected.to_dict()
        counted = [g for g, r in rows.items() if r["counted"]]
        assert "tiny" not in counted
        keep = np.isin(sensitive, counted)
        ratio = demographic_parity_ratio(chosen[keep], chosen[keep], sensitive_features=sensitive[keep])
        assert found["attributes"][0]["demographic_parity_ratio"] == ratio
        inside = np.isin(where, counted)
        odds = equalized_odds_difference(y[inside], flagged[inside], sensitive_features=where[inside])
        assert found["attributes"][0]["equalized_odds_difference"] == odds
