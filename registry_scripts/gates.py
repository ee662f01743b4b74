"""Checks a candidate must pass before it may serve in Production."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry_scripts import access, fairness
from registry_scripts.registry import Version
from registry_scripts.reports import auc_worse

METRIC = "holdout_roc_auc"
CV_METRIC = "cv_roc_auc"
BASELINE_CV_METRIC = "baseline_cv_roc_auc"
BASELINE_TOLERANCE_TAG = "baseline_tolerance"  # Written by training with the config's tolerance.
DEFAULT_BASELINE_TOLERANCE = 0.01
# The live-shadow gate's limits when training tagged none (training's `promotion:` config).
SHADOW_POLICY = {
    "min_shadow_rows": 500.0,
    "max_flip_rate": 0.15,
    "min_labelled": 100.0,
    "auc_tolerance": 0.01,
}
ADDITIVITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class GateResult:
    """Outcome of one gate; `overridable` gates may be bypassed with --force."""

    name: str
    passed: bool
    detail: str
    overridable: bool = False
    warning: bool = False  # Passed, but with a finding the config asks only to warn about.


def holdout_auc(client: MlflowClient, version: Version) -> float | None:
    """The version's holdout ROC AUC from its training run, else from its tag."""
    if version.run_id:
        try:
            value = client.get_run(version.run_id).data.metrics.get(METRIC)
        except MlflowException:
            value = None
        if value is not None:
            return float(value)
    tagged = version.tags.get(METRIC)
    try:
        return float(tagged) if tagged is not None else None
    except ValueError:
        return None


def check_loads_and_explains(name: str, version: Version) -> GateResult:
    """The candidate loads, predicts its own input example, and its explanations add up."""
    gate = "loads-and-explains"
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version.number}")
        example = model.input_example
        if example is None:
            return GateResult(gate, False, "the model was logged without an input example")
        output = model.predict(pd.DataFrame(example))
    except Exception as exc:  # A gate reports any failure of the candidate rather than crashing.
        return GateResult(gate, False, f"loading or predicting failed: {type(exc).__name__}: {exc}")
    required = {"score", "base_value", "contributions"}
    if not isinstance(output, pd.DataFrame) or not required <= set(output.columns):
        return GateResult(gate, False, f"output lacks the columns {sorted(required)}")
    scores = output["score"].to_numpy(dtype=np.float64)
    if not np.all((scores > 0) & (scores < 1)):
        return GateResult(gate, False, f"scores outside (0, 1): {scores.tolist()}")
    worst = 0.0
    for score, base, contributions in zip(scores, output["base_value"], output["contributions"], strict=True):
        logit = math.log(score / (1 - score))
        worst = max(worst, abs(float(base) + sum(contributions.values()) - logit))
    if worst > ADDITIVITY_TOLERANCE:
        return GateResult(gate, False, f"base_value + contributions differs from logit(score) by {worst:.2e}")
    return GateResult(gate, True, f"predicted {len(output)} example rows; additivity error {worst:.1e}")


def check_metric(
    client: MlflowClient, candidate: Version, current: Version | None, tolerance: float
) -> GateResult:
    """The candidate's holdout ROC AUC is not worse than production's by more than the tolerance."""
    gate = "holdout-roc-auc"
    mine = holdout_auc(client, candidate)
    if mine is None:
        return GateResult(gate, False, f"version {candidate.number} has no {METRIC} metric", overridable=True)
    if current is None or current.number == candidate.number:
        return GateResult(
            gate, True, f"{METRIC} {mine:.4f}; no other version in Production", overridable=True
        )
    theirs = holdout_auc(client, current)
    if theirs is None:
        return GateResult(
            gate, True, f"{METRIC} {mine:.4f}; production version {current.number} has none", overridable=True
        )
    return _within(
        gate,
        METRIC,
        (mine, theirs),
        tolerance,
        against=f"production version {current.number}",
        worse="worse than",
    )


def _within(
    gate: str, metric: str, figures: tuple[float, float], tolerance: float, *, against: str, worse: str
) -> GateResult:
    """Passed when the first figure is not below the second by more than the tolerance."""
    mine, theirs = figures
    passed = mine >= theirs - tolerance
    relation = "within" if passed else worse
    return GateResult(
        gate,
        passed,
        f"{metric} {mine:.4f} vs {against} {theirs:.4f}: {relation} the tolerance {tolerance}",
        overridable=True,
    )


def check_baseline(client: MlflowClient, candidate: Version) -> GateResult:
    """The candidate's CV ROC AUC is not below its logistic baseline's by more than training's tolerance."""
    gate = "beats-baseline"
    try:
        metrics = client.get_run(candidate.run_id).data.metrics if candidate.run_id else {}
    except MlflowException:
        metrics = {}
    mine, baseline = metrics.get(CV_METRIC), metrics.get(BASELINE_CV_METRIC)
    if mine is None or baseline is None:
        return GateResult(gate, True, "the training run logged no baseline to compare with", overridable=True)
    try:
        tolerance = float(candidate.tags.get(BASELINE_TOLERANCE_TAG, DEFAULT_BASELINE_TOLERANCE))
    except ValueError:
        tolerance = DEFAULT_BASELINE_TOLERANCE
    return _within(
        gate,
        CV_METRIC,
        (mine, baseline),
        tolerance,
        against="the logistic baseline's",
        worse="below it by more than",
    )


def _promotion_policy(candidate: Version) -> dict[str, float]:
    """The live-shadow gate's limits, as training tagged them on the version (defaults otherwise)."""
    policy = dict(SHADOW_POLICY)
    for key in policy:
        with contextlib.suppress(ValueError, KeyError):
            policy[key] = float(candidate.tags[f"promotion.{key}"])
    return policy


def latest_report(client: MlflowClient, kind: str, name: str, version: Version) -> Run | None:
    """The newest `python -m monitoring <kind>` run of this version (`compare`: as the challenger)."""
    if not version.run_id:
        return None
    try:
        experiment = client.get_run(version.run_id).info.experiment_id
        found = client.search_runs(
            [experiment],
            f"tags.monitoring = {access.quoted(kind)} and tags.model_name = {access.quoted(name)} "
            f"and tags.model_version = '{version.number}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    except (MlflowException, access.LookupFailed):
        return None
    return found[0] if found else None


def check_live_shadow(
    client: MlflowClient, name: str, candidate: Version, current: Version | None
) -> GateResult:
    """The candidate's shadow comparison against the production version: rows, errors, flips, realised AUC."""
    gate = "live-shadow"
    require = candidate.tags.get("promotion.require_shadow") == "true"
    found = latest_report(client, "compare", name, candidate)
    against = found.data.tags.get("champion_version") if found else None
    if found is None or current is None or against != str(current.number):
        missing = (
            f"no shadow comparison of version {candidate.number} against production version "
            f"{current.number if current else '(none)'}"
            + (f" (the latest is against version {against})" if found else "")
            + "; run `python -m monitoring compare` after shadowing it"
        )
        return GateResult(gate, not require, missing + ("; required by its config" if require else ""), True)
    policy = _promotion_policy(candidate)
    metrics = found.data.metrics
    rows, errors = metrics.get("rows", 0.0), metrics.get("shadow_errors", 0.0)
    flips, labelled = metrics.get("decisions.flip_rate", 1.0), metrics.get("labelled", 0.0)
    problems = []
    if rows < policy["min_shadow_rows"]:
        problems.append(f"{rows:.0f} shadowed rows, {policy['min_shadow_rows']:.0f} needed")
    if errors:
        problems.append(f"{errors:.0f} shadow calls failed")
    if flips > policy["max_flip_rate"]:
        problems.append(f"flip rate {flips:.3f} over {policy['max_flip_rate']}")
    difference = metrics.get("realised.auc_difference.difference")
    high = metrics.get("realised.auc_difference.high")
    if (
        labelled >= policy["min_labelled"]
        and difference is not None
        and high is not None
        and auc_worse(difference, high, policy["auc_tolerance"])
    ):
        problems.append(f"realised ROC AUC {difference:+.4f} against production's (up to {high:+.4f})")
    figures = (
        f"run {found.info.run_id}: {rows:.0f} rows, {errors:.0f} errors, flip rate {flips:.3f}, "
        f"{labelled:.0f} labelled" + (f", AUC difference {difference:+.4f}" if difference is not None else "")
    )
    return GateResult(
        gate, not problems, "; ".join(problems) + f" ({figures})" if problems else figures, True
    )


def _live_fairness(
    client: MlflowClient, name: str, candidate: Version, current: Version | None
) -> tuple[list[str] | None, str]:
    """The latest live fairness report's flagged attributes and one line; None without a report.

    The candidate's own report where it served traffic (a canary), else its predecessor's in Production:
    how the service treats the people it actually scores, which the holdout may not resemble.
    """
    for version in (v for v in (candidate, current) if v is not None):
        found = latest_report(client, "fairness", name, version)
        if found is None:
            continue
        flagged = [item for item in found.data.tags.get("flagged", "none").split(",") if item != "none"]
        ratios = ", ".join(
            f"{key.removesuffix('.demographic_parity_ratio')} {value:.3f}"
            for key, value in sorted(found.data.metrics.items())
            if key.endswith(".demographic_parity_ratio")
        )
        return flagged, (
            f"live report {found.info.run_id} of version {version.number} "
            f"({found.data.metrics.get('rows', 0):.0f} rows; demographic-parity ratios {ratios or 'n/a'})"
        )
    against = f" or of production version {current.number}" if current is not None else ""
    return None, f"no `python -m monitoring fairness` report of version {candidate.number}{against}"


def check_fairness(
    client: MlflowClient, name: str, candidate: Version, current: Version | None
) -> GateResult:
    """The four-fifths rule on the holdout, on live traffic, or both (`fairness.gate_on`); refuse or warn."""
    gate = "fairness"
    summary = fairness.recorded(candidate.run_id) if candidate.run_id else None
    if summary is None:
        return GateResult(gate, True, "not assessed: the training config names no protected attributes")
    policy = summary["policy"]
    judged = policy.get("gate_on", "holdout")  # Versions trained before `gate_on` judged the holdout.
    findings, lines = [], []
    if judged in ("holdout", "both"):
        said = "; ".join(fairness.describe(item, policy["min_ratio"]) for item in summary["attributes"])
        lines.append(f"holdout {said}")
        if summary["flagged"]:
            findings.append(f"{', '.join(summary['flagged'])} under the four-fifths rule on the holdout")
    if judged in ("live", "both"):
        flagged, said = _live_fairness(client, name, candidate, current)
        lines.append(said)
        if flagged is None:
            findings.append(f"no live figures: {said}; run it on the logged traffic first")
        elif flagged:
            findings.append(f"{', '.join(flagged)} under the four-fifths rule on live traffic")
    detail = "; ".join(lines)
    if not findings:
        return GateResult(gate, True, detail, overridable=True)
    failed = f"{'; '.join(findings)} ({detail})"
    if policy["gate"] == "refuse":
        return GateResult(gate, False, f"{failed}; the config's fairness.gate is refuse", overridable=True)
    return GateResult(
        gate, True, f"{failed}; the config's fairness.gate is warn", overridable=True, warning=True
    )
