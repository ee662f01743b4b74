"""Drift statistics: pure functions of a reference sample and the logged rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

EPSILON = 1e-4  # Floor of a bin's share in PSI, so an empty bin does not make it infinite.


class Thresholds(BaseModel):
    """When a feature counts as drifted; every value is written into the report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    psi: float = Field(default=0.2, gt=0, description="PSI above this is drift")
    p_value: float = Field(
        default=0.01, gt=0, lt=1, description="KS / chi-square p below this, after Bonferroni, is drift"
    )
    missing: float = Field(default=0.1, gt=0, le=1, description="rise in the share of missing values")
    unseen: float = Field(default=0.05, gt=0, le=1, description="share of rows with an unseen category")
    explanation_share: float = Field(
        default=0.03, gt=0, le=1, description="absolute move of a feature's share of mean |SHAP|"
    )
    explanation_ratio: float = Field(
        default=0.5, gt=0, description="and relative move of that share (0.5 = by half)"
    )
    bins: int = Field(default=10, ge=2, le=100, description="quantile bins of numeric PSI")
    min_rows: int = Field(default=100, ge=10, description="fewer logged rows: no report")


@dataclass(frozen=True)
class FeatureDrift:
    """One input feature, reference against logged."""

    feature: str
    kind: str  # "numeric" or "categorical"
    test: str
    statistic: float
    p_value: float
    p_adjusted: float
    psi: float
    missing_reference: float
    missing_current: float
    unseen: float
    drifted: bool
    reasons: list[str]

    def as_json(self) -> dict[str, Any]:
        """Plain JSON values."""
        return asdict(self)


def numeric_psi(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    """Population stability index over the reference's quantile bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # A constant reference: one bin for its value, one for anything else.
        ref_share = np.array([1.0, 0.0])
        cur_share = np.array([np.mean(current == edges[0]), np.mean(current != edges[0])])
        return _psi(ref_share, cur_share)
    inner = edges[1:-1]
    ref_counts = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(inner) + 1)
    cur_counts = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(inner) + 1)
    return _psi(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum())


def categorical_psi(reference: pd.Series, current: pd.Series) -> float:
    """Population stability index over the categories of both samples."""
    ref_share = reference.value_counts(normalize=True)
    cur_share = current.value_counts(normalize=True)
    categories = ref_share.index.union(cur_share.index)
    return _psi(
        ref_share.reindex(categories, fill_value=0).to_numpy(),
        cur_share.reindex(categories, fill_value=0).to_numpy(),
    )


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.clip(expected, EPSILON, None)
    actual = np.clip(actual, EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _chi_square(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    table = pd.concat([reference.value_counts(), current.value_counts()], axis=1).fillna(0).to_numpy()
    table = table[table.sum(axis=1) > 0]
    if len(table) < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    unseen: dict[str, float],
    thresholds: Thresholds,
) -> list[FeatureDrift]:
    """Each reference column against the logged one: KS or chi-square, PSI, missing and unseen shares."""
    results = []
    features = list(reference.columns)
    for name in features:
        ref_all = reference[name]
        cur_all = current[name] if name in current else pd.Series([None] * len(current), dtype=object)
        ref, cur = ref_all.dropna(), cur_all.dropna()
        numeric = pd.api.types.is_numeric_dtype(ref_all)
        if len(cur) == 0:
            statistic, p_value, psi = 0.0, 1.0, 0.0
        elif numeric:
            ref_values, cur_values = ref.to_numpy(dtype=float), pd.to_numeric(cur, errors="coerce").dropna()
            ks = stats.ks_2samp(ref_values, cur_values.to_numpy(dtype=float))
            statistic, p_value = float(ks.statistic), float(ks.pvalue)
            psi = numeric_psi(ref_values, cur_values.to_numpy(dtype=float), thresholds.bins)
        else:
            statistic, p_value = _chi_square(ref.astype(str), cur.astype(str))
            psi = categorical_psi(ref.astype(str), cur.astype(str))
        p_adjusted = min(1.0, p_value * len(features))  # Bonferroni over the features tested.
        missing_ref, missing_cur = float(ref_all.isna().mean()), float(cur_all.isna().mean())
        unseen_share = unseen.get(name, 0.0)
        reasons = []
        if psi > thresholds.psi:
            reasons.append(f"PSI {psi:.3f} > {thresholds.psi}")
        if p_adjusted < thresholds.p_value:
            reasons.append(f"{'KS' if numeric else 'chi-square'} p {p_adjusted:.2g} < {thresholds.p_value}")
        if missing_cur - missing_ref > thresholds.missing:
            reasons.append(f"missing {missing_cur:.1%} vs {missing_ref:.1%}")
        if unseen_share > thresholds.unseen:
            reasons.append(f"unseen categories in {unseen_share:.1%} of rows")
        results.append(
            FeatureDrift(
                feature=name,
                kind="numeric" if numeric else "categorical",
                test="ks" if numeric else "chi-square",
                statistic=statistic,
                p_value=p_value,
                p_adjusted=p_adjusted,
                psi=psi,
                missing_reference=missing_ref,
                missing_current=missing_cur,
                unseen=unseen_share,
                drifted=bool(reasons),
                reasons=reasons,
            )
        )
    return results


def score_drift(reference: np.ndarray, current: np.ndarray, thresholds: Thresholds) -> dict[str, Any]:
    """The score distribution, reference against logged: KS and PSI (not corrected: one test)."""
    ks = stats.ks_2samp(reference, current)
    psi = numeric_psi(reference, current, thresholds.bins)
    return {
        "ks_statistic": float(ks.statistic),
        "p_value": float(ks.pvalue),
        "psi": psi,
        "reference_mean": float(np.mean(reference)),
        "current_mean": float(np.mean(current)),
        "drifted": bool(psi > thresholds.psi or ks.pvalue < thresholds.p_value),
    }


def explanation_drift(
    reference: dict[str, float], contributions: list[dict[str, float]], thresholds: Thresholds
) -> list[dict[str, Any]]:
    """Each feature's share of the mean |SHAP| in the logged rows against its share in the reference."""
    features = list(reference)
    complete = [row for row in contributions if isinstance(row, dict) and set(features) <= set(row)]
    if not complete:
        return []
    logged = np.abs(np.array([[row[name] for name in features] for row in complete], dtype=float)).mean(
        axis=0
    )
    ref = np.array([reference[name] for name in features], dtype=float)
    ref_share, cur_share = ref / ref.sum(), logged / logged.sum()
    results = []
    for i, name in enumerate(features):
        move = cur_share[i] - ref_share[i]
        ratio = abs(move) / ref_share[i] if ref_share[i] > 0 else float("inf")
        results.append(
            {
                "feature": name,
                "reference_mean_abs": float(ref[i]),
                "current_mean_abs": float(logged[i]),
                "reference_share": float(ref_share[i]),
                "current_share": float(cur_share[i]),
                "drifted": bool(
                    abs(move) > thresholds.explanation_share and ratio > thresholds.explanation_ratio
                ),
            }
        )
    return results


def rate_over_time(times: pd.Series, positive: pd.Series, scores: pd.Series) -> list[dict[str, Any]]:
    """Positive rate and mean score per day (per hour when the window is shorter than two days)."""
    stamps = pd.to_datetime(times, utc=True)
    span = stamps.max() - stamps.min()
    freq = "h" if span < pd.Timedelta(days=2) else "D"
    frame = pd.DataFrame({"period": stamps.dt.floor(freq), "positive": positive, "score": scores})
    grouped = frame.groupby("period").agg(
        rows=("score", "size"), positive_rate=("positive", "mean"), mean_score=("score", "mean")
    )
    return [
        {"period": period.isoformat(), **{k: float(v) for k, v in row.items()}}
        for period, row in grouped.iterrows()
    ]
