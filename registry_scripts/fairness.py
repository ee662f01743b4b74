"""Fairness by group: the policy a config names; fairlearn's figures, which training and monitoring log."""

from __future__ import annotations

import math
import re
from itertools import pairwise
from typing import Any, Literal

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError
from sklearn.metrics import roc_auc_score

ARTIFACT = "fairness/fairness.json"  # In the training run: the policy and the holdout's figures.
MISSING = "missing"  # The group of a row without a value.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Attribute(_Strict):
    """One protected attribute: its values as groups, or a number cut into bands."""

    bands: tuple[int, ...] = Field(
        default=(), description="Band edges: [30, 40, 50] gives under 30, 30-39, 40-49, 50 and over."
    )

    @field_validator("bands")
    @classmethod
    def _increasing(cls, edges: tuple[int, ...]) -> tuple[int, ...]:
        if any(high <= low for low, high in pairwise(edges)):
            raise PydanticCustomError(
                "bands", "band edges must be strictly increasing, got {edges}", {"edges": list(edges)}
            )
        return edges


class FairnessPolicy(_Strict):
    """Protected attributes (model inputs or not) and what counts as a finding."""

    attributes: dict[str, Attribute] = Field(min_length=1)
    # The decision whose rate by group is compared: `negative` where not being flagged is the favourable
    # outcome (a credit approval); true and false positive rates are always of the positive class.
    selected: Literal["positive", "negative"] = "positive"
    # The four-fifths rule: a group selected at under 80% of the most-selected group's rate.
    min_ratio: float = Field(default=0.8, gt=0.0, le=1.0)
    # Smaller groups are shown but left out of the ratio and the difference: their rates are noise.
    min_group_rows: int = Field(default=20, ge=1)
    gate: Literal["warn", "refuse"] = "warn"  # What the promotion gate does with a flagged attribute.
    # What the gate judges: the holdout at training, the latest `monitoring fairness` report on live traffic
    # (the candidate's own shadowed rows, else its predecessor's in Production), or both.
    gate_on: Literal["holdout", "live", "both"] = "holdout"
    # Opt-in at training: `reweigh` weights the training rows so that the outcome is independent of the
    # attributes' groups (Kamiran and Calders); the model still never sees the attributes.
    mitigation: Literal["none", "reweigh"] = "none"


def metric_key(attribute: str, figure: str) -> str:
    """`<attribute>.<figure>` as MLflow accepts a metric's name: other characters become `_`."""
    return re.sub(r"[^\w./ -]", "_", f"{attribute}.{figure}")


def band_labels(edges: tuple[int, ...]) -> list[str]:
    """The names of the bands `edges` makes, lowest first."""
    middle = [f"{low}-{high - 1}" for low, high in pairwise(edges)]
    return [f"under {edges[0]}", *middle, f"{edges[-1]} and over"]


def groups(values: pd.Series, attribute: Attribute) -> pd.Series:
    """Each row's group: its value as text, or its band; `missing` without a value."""
    if not attribute.bands and isinstance(values.dtype, pd.CategoricalDtype):
        # Many rows, few groups (monitoring's logged rows): named once a category, not once a row.
        named = values.cat.rename_categories([str(c) for c in values.cat.categories])
        if named.isna().any():
            if MISSING not in named.cat.categories:
                named = named.cat.add_categories([MISSING])
            named = named.fillna(MISSING)
        return named
    if not attribute.bands:
        named = values.astype("string").fillna(MISSING).astype(object)
        return pd.Series(named.to_numpy(), index=values.index, name=values.name)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    labels = band_labels(attribute.bands)
    which = np.searchsorted(np.asarray(attribute.bands, dtype=float), numbers, side="right")
    codes = np.where(np.isnan(numbers), len(labels), np.minimum(which, len(labels) - 1))
    banded = pd.Categorical.from_codes(codes, categories=[*labels, MISSING])
    return pd.Series(banded, index=values.index, name=values.name)


def _ordered(found: list[Any], attribute: Attribute) -> list[Any]:
    """Bands lowest first, other groups by name; `missing` last."""
    if attribute.bands:
        order = {label: index for index, label in enumerate(band_labels(attribute.bands))}
        return sorted(found, key=lambda group: order.get(group, len(order)))
    return sorted(found, key=lambda group: (group == MISSING, str(group)))


def _roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(y_true, scores)) if len(np.unique(y_true)) == 2 else math.nan


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _spread(rates: np.ndarray) -> float:
    return float(rates.max() - rates.min())


def assess_attribute(
    name: str,
    attribute: Attribute,
    values: pd.Series,
    *,
    decisions: np.ndarray,
    scores: np.ndarray,
    actual: np.ndarray,
    policy: FairnessPolicy,
) -> dict[str, Any]:
    """Per-group rate of the selected decision (every row), and TPR, FPR and ROC AUC (labelled rows only).

    From counts per group, so a million logged rows take a few arrays of a million numbers. The figures
    are fairlearn's (`selection_rate`, `true_positive_rate`, `false_positive_rate`,
    `demographic_parity_ratio`, `equalized_odds_difference`; the tests hold them to it), whose
    `MetricFrame` takes some 400 MiB and 8 s for each million rows.
    """
    codes, found = pd.factorize(groups(values, attribute), sort=False)
    size = len(found)
    chosen = decisions if policy.selected == "positive" else 1 - decisions
    rows = np.bincount(codes, minlength=size)
    selection = np.bincount(codes, weights=chosen, minlength=size) / np.maximum(rows, 1)
    labelled = ~np.isnan(actual)
    where, y, flagged, ranked = (
        codes[labelled],
        actual[labelled].astype(np.int64),
        decisions[labelled],
        scores[labelled],
    )
    counted_rows = np.bincount(where, minlength=size)
    positives = np.bincount(where, weights=y, minlength=size)
    negatives = counted_rows - positives
    true_positives = np.bincount(where, weights=y * flagged, minlength=size)
    false_positives = np.bincount(where, weights=(1 - y) * flagged, minlength=size)
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr, fpr = true_positives / positives, false_positives / negatives
    counted = [g for g in range(size) if rows[g] >= policy.min_group_rows]
    ratio = None
    if len(counted) >= 2:
        highest = selection[counted].max()
        ratio = float(selection[counted].min() / highest) if highest > 0 else math.nan
    # Equalized odds needs both outcomes in every counted group's labelled rows.
    both = [g for g in counted if positives[g] and negatives[g] and counted_rows[g] >= policy.min_group_rows]
    odds = max(_spread(tpr[both]), _spread(fpr[both])) if len(both) >= 2 else None
    table = []
    for group in _ordered(list(found), attribute):
        g = int(np.flatnonzero(found == group)[0])
        mine = where == g
        table.append(
            {
                "group": str(group),
                "rows": int(rows[g]),
                "counted": g in counted,
                "selection_rate": _number(selection[g]),
                "labelled": int(counted_rows[g]),
                # A rate with no row to count (no positives, or no negatives) is n/a, not 0.
                "true_positive_rate": _number(tpr[g]) if positives[g] else None,
                "false_positive_rate": _number(fpr[g]) if negatives[g] else None,
                "roc_auc": _number(_roc_auc(y[mine], ranked[mine])) if counted_rows[g] else None,
            }
        )
    return {
        "attribute": name,
        "groups": table,
        "demographic_parity_ratio": ratio,
        "equalized_odds_difference": odds,
        "flagged": ratio is not None and ratio < policy.min_ratio,
    }


def assess(
    attributes: pd.DataFrame,
    *,
    decisions: np.ndarray,
    scores: np.ndarray,
    actual: np.ndarray,
    policy: FairnessPolicy,
    source: str,
) -> dict[str, Any]:
    """Every attribute of the policy that `attributes` holds; those it lacks are listed as unavailable."""
    found = [
        assess_attribute(
            name, attribute, attributes[name],
            decisions=decisions, scores=scores, actual=actual, policy=policy,
        )
        for name, attribute in policy.attributes.items()
        if name in attributes.columns
    ]  # fmt: skip
    return {
        "source": source,
        "policy": policy.model_dump(mode="json"),
        "rows": len(decisions),
        "labelled": int(np.sum(~np.isnan(actual))),
        "attributes": found,
        "flagged": [item["attribute"] for item in found if item["flagged"]],
        "unavailable": [name for name in policy.attributes if name not in attributes.columns],
    }


def figure(value: float | None) -> str:
    """A rate, ratio or difference as the card, the reports and the gate print it; n/a when undefined."""
    return "n/a" if value is None else f"{value:.3f}"


def describe(item: dict[str, Any], min_ratio: float) -> str:
    """One line: the attribute's ratio against the rule, and its equalized-odds difference."""
    ratio, odds = item["demographic_parity_ratio"], item["equalized_odds_difference"]
    said = (
        f"{item['attribute']}: demographic-parity ratio "
        + figure(ratio)
        + (" (fewer than two groups large enough)" if ratio is None else "")
        + (f" (under {min_ratio:g})" if item["flagged"] else "")
    )
    return said + ("" if odds is None else f", equalized-odds difference {figure(odds)}")


def plot(summary: dict[str, Any]) -> Figure:
    """Selection rate, TPR and FPR by group, one panel per attribute; the four-fifths line of each."""
    items = summary["attributes"]
    chosen = "flagged" if summary["policy"]["selected"] == "positive" else "not flagged"
    names_of = {"selection_rate": f"share {chosen}"}
    figure = Figure(figsize=(4.2 * max(len(items), 1), 3.6), layout="constrained")
    for index, item in enumerate(items):
        axes = figure.add_subplot(1, max(len(items), 1), index + 1)
        names = [row["group"] for row in item["groups"]]
        positions = np.arange(len(names))
        for offset, key in (
            (-0.27, "selection_rate"),
            (0.0, "true_positive_rate"),
            (0.27, "false_positive_rate"),
        ):
            heights = [row[key] if row[key] is not None else 0.0 for row in item["groups"]]
            axes.bar(positions + offset, heights, width=0.27, label=names_of.get(key, key.replace("_", " ")))
        rates = [row["selection_rate"] for row in item["groups"] if row["counted"] and row["selection_rate"]]
        if rates:
            axes.axhline(
                summary["policy"]["min_ratio"] * max(rates), color="grey", linestyle="--", linewidth=1,
                label=f"{summary['policy']['min_ratio']:g} of the highest share",
            )  # fmt: skip
        axes.set_xticks(positions, names, rotation=30, ha="right", fontsize=8)
        axes.set_ylim(0, 1)
        axes.set_title(describe(item, summary["policy"]["min_ratio"]).split(",")[0], fontsize=8)
        if index == 0:
            axes.legend(fontsize=7)
    return figure


def recorded(run_id: str) -> dict[str, Any] | None:
    """The policy and holdout figures a training run logged; None when its config named no attributes."""
    try:
        found = mlflow.artifacts.load_dict(f"runs:/{run_id}/{ARTIFACT}")
    except (MlflowException, OSError):
        return None
    return found if isinstance(found, dict) else None
