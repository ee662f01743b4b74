"""The app's words and colours for a model: pure functions of what `GET /model` says."""

from __future__ import annotations

from typing import Any

RED, AMBER, GREEN = "#c62828", "#ef8f00", "#2e7d32"
REASONS = 4  # Reason codes asked for: more than four is considered unhelpful (Regulation B).


def entity_noun(model: dict[str, Any]) -> str:
    """What one scored row is: `employee_id` -> employee, `client_id` -> client."""
    column = str(model.get("id_column") or "")
    noun = column.removesuffix("_id").removesuffix("id").replace("_", " ").strip()
    return noun or "entity"


def outcome_words(model: dict[str, Any]) -> str:
    """What the score is the probability of, in the dataset's words: `Attrition = Yes`."""
    labels = model.get("labels") or {}
    target = (model.get("use_case") or {}).get("target") or "outcome"
    return f"{target} = {labels.get('positive', 'positive')}"


def colour(score: float, threshold: float) -> str:
    """Red at or above the threshold, amber within a third below it, green below that."""
    if score >= threshold:
        return RED
    return AMBER if score >= threshold * 2 / 3 else GREEN


def reason_lines(reasons: list[dict[str, Any]]) -> list[str]:
    """The model's reason codes as an officer reads them: "OVERTIME: Works overtime (OverTime = Yes)"."""
    return [
        f"**{reason['code']}**: {reason['statement']} ({reason['feature']} = {reason['value']}, "
        f"{reason['contribution']:+.2f} log-odds)"
        for reason in reasons
    ]


def asked_params(model: dict[str, Any]) -> dict[str, Any]:
    """The params the UI sends: the usual four reason codes, where the version has a catalogue."""
    declared = {param.get("name") for param in model.get("params") or []}
    return {"reasons": REASONS} if "reasons" in declared else {}


def explained(prediction: dict[str, Any], inputs: dict[str, Any]) -> list[str]:
    """Why, in words: the reason codes when the answer has them, else the strongest contributions."""
    reasons = prediction.get("reasons")
    if isinstance(reasons, list):  # Not asked for, or logged before reason codes: missing (None, NaN).
        return reason_lines(reasons) or ["Nothing raised the risk above the average."]
    return drivers(prediction.get("contributions") or {}, inputs)


def drivers(contributions: dict[str, float], inputs: dict[str, Any], *, count: int = 5) -> list[str]:
    """The strongest contributions as sentences: "OverTime = Yes raises the risk (+0.62 log-odds)"."""
    strongest = sorted(contributions.items(), key=lambda item: -abs(item[1]))[:count]
    sentences = []
    for name, value in strongest:
        verb = "raises" if value > 0 else "lowers"
        shown = inputs.get(name, "?")
        sentences.append(f"{name} = {shown} {verb} the risk ({value:+.2f} log-odds)")
    return sentences


def form_default(facts: dict[str, Any]) -> Any:
    """A feature's starting value in the form: the training median or most common category."""
    return facts["median"] if facts["kind"] == "numeric" else facts["most_common"]
