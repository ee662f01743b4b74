"""The fault run as a Markdown table and a list of broken promises."""

from __future__ import annotations

from typing import Any


def _timings(seconds: dict[str, float]) -> str:
    return "; ".join(f"{name.replace('_', ' ')}: {value:g}" for name, value in seconds.items())


def markdown(outcomes: list[dict[str, Any]], environment: dict[str, str]) -> str:
    """One row per scenario: requests sent, answered, refused, logged, lost, duplicated, timings."""
    lines = [
        "| fault | sent | answered 200 | refused (status: n) | logged | lost | duplicated | timings (s) |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for outcome in outcomes:
        refused = ", ".join(f"{status}: {n}" for status, n in sorted(outcome["refused"].items())) or "none"
        lines.append(
            f"| {outcome['fault']} | {outcome['sent']} | {outcome['answered']} | {refused} | "
            f"{outcome['logged']} | {outcome['lost']} | {outcome['duplicated']} | "
            f"{_timings(outcome['seconds'])} |"
        )
    broken = [f"- {outcome['name']}: {problem}" for outcome in outcomes for problem in outcome["broken"]]
    lines += ["", "Promises broken: none." if not broken else "Promises broken:", *broken, ""]
    lines.append(", ".join(f"{key}: {value}" for key, value in environment.items()))
    return "\n".join(lines) + "\n"
