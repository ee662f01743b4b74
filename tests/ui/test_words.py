"""The app's words for an answer: reason codes when the version has them, else the strongest contributions."""

from __future__ import annotations

from ui.words import asked_params, explained

REASON = {
    "code": "OVERTIME",
    "feature": "OverTime",
    "value": "Yes",
    "statement": "Works overtime",
    "contribution": 0.62,
}


def test_reason_codes_are_asked_for_only_from_a_version_that_declares_them() -> None:
    assert asked_params({"params": [{"name": "threshold"}, {"name": "reasons"}]}) == {"reasons": 4}
    assert asked_params({"params": [{"name": "threshold"}]}) == {} and asked_params({}) == {}


def test_reason_codes_replace_the_generic_sentences() -> None:
    inputs = {"OverTime": "Yes", "Age": 30}
    answer = {"contributions": {"OverTime": 0.62, "Age": -0.3}, "reasons": [REASON]}
    assert explained(answer, inputs) == ["**OVERTIME**: Works overtime (OverTime = Yes, +0.62 log-odds)"]
    assert explained({**answer, "reasons": []}, inputs) == ["Nothing raised the risk above the average."]
    generic = explained({**answer, "reasons": float("nan")}, inputs)  # A row logged without reasons.
    assert generic == [
        "OverTime = Yes raises the risk (+0.62 log-odds)",
        "Age = 30 lowers the risk (-0.30 log-odds)",
    ]
