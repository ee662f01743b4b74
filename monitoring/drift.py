"""Drift statistics from mergeable counts: logged rows are folded chunk by chunk, never held whole.

Each feature's logged values are counted on a grid the reference fixes (its distinct values for KS, its
quantile bins for PSI, its categories for chi-square), so memory depends on the reference, not on how
many rows were logged, and every figure equals the one computed on all rows at once: counts, shares,
PSI and chi-square exactly, the KS statistic exactly and its p-value as SciPy computes it from that
statistic and the two sample sizes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

EPSILON = 1e-4  # Floor of a bin's share in PSI, so an empty bin does not make it infinite.
EXACT_KS_ROWS = 10_000  # SciPy's `ks_2samp` is exact up to this many rows a sample, asymptotic above.
PLOT_BINS = 20


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


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.clip(expected, EPSILON, None)
    actual = np.clip(actual, EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


class NumericCounts:
    """Logged values of one number, counted on the reference's grid: exact KS and PSI, in bounded memory."""

    def __init__(self, reference: np.ndarray, bins: int) -> None:
        self.reference = np.sort(np.asarray(reference, dtype=float))
        self.grid = np.unique(self.reference)  # KS: at each reference value, and between two of them.
        edges = np.unique(np.quantile(self.reference, np.linspace(0, 1, bins + 1)))
        self.constant = len(edges) < 2
        self.edges = edges
        self.at = np.zeros(len(self.grid), dtype=np.int64)
        self.between = np.zeros(len(self.grid) + 1, dtype=np.int64)
        self.psi_counts = np.zeros(2 if self.constant else len(edges) - 1, dtype=np.int64)
        self.n = 0
        self.total = 0.0

    def add(self, values: np.ndarray) -> None:
        """Count more logged values (no NaN)."""
        values = np.asarray(values, dtype=float)
        if not len(values):
            return
        left = np.searchsorted(self.grid, values, side="left")
        right = np.searchsorted(self.grid, values, side="right")
        equal = right > left
        self.at += np.bincount(left[equal], minlength=len(self.at))
        self.between += np.bincount(left[~equal], minlength=len(self.between))
        if self.constant:
            same = int(np.sum(values == self.edges[0]))
            self.psi_counts += np.array([same, len(values) - same])
        else:
            which = np.searchsorted(self.edges[1:-1], values, side="right")
            self.psi_counts += np.bincount(which, minlength=len(self.psi_counts))
        self.n += len(values)
        self.total += float(values.sum())

    @property
    def mean(self) -> float:
        """Mean of the logged values."""
        return self.total / self.n if self.n else float("nan")

    def psi(self) -> float:
        """Population stability index over the reference's quantile bins."""
        if self.constant:  # A constant reference: one bin for its value, one for anything else.
            return _psi(np.array([1.0, 0.0]), self.psi_counts / self.psi_counts.sum())
        inner = self.edges[1:-1]
        ref_counts = np.bincount(
            np.searchsorted(inner, self.reference, side="right"), minlength=len(inner) + 1
        )
        return _psi(ref_counts / ref_counts.sum(), self.psi_counts / self.psi_counts.sum())

    def _stand_ins(self) -> np.ndarray:
        """A sample with the logged values' counts on the grid: the same KS statistic as the logged one."""
        grid = self.grid
        inside = np.concatenate([[grid[0] - 1.0], (grid[:-1] + grid[1:]) / 2, [grid[-1] + 1.0]])
        return np.concatenate([np.repeat(grid, self.at), np.repeat(inside, self.between)])

    def ks(self) -> tuple[float, float]:
        """Two-sample KS statistic and p-value, as `scipy.stats.ks_2samp` gives on all the logged values."""
        n1, n2 = len(self.reference), self.n
        if max(n1, n2) <= EXACT_KS_ROWS:  # Few rows: SciPy's exact p-value on a sample of stand-ins.
            found = stats.ks_2samp(self.reference, self._stand_ins())
            return float(found.statistic), float(found.pvalue)
        # The empirical CDFs only differ most at a reference value or just below one (the grid).
        ref_le = np.searchsorted(self.reference, self.grid, side="right") / n1
        cur_le = np.cumsum(self.at + self.between[:-1]) / n2
        cur_lt = (np.cumsum(self.at + self.between[:-1]) - self.at) / n2
        ref_before = np.concatenate([[0.0], ref_le[:-1]])
        highest: float = float(np.max(ref_le - cur_le))
        if self.between[-1]:  # Values above the last reference value: both CDFs reach 1.
            highest = max(highest, 0.0)
        lowest: float = float(np.max(cur_le - ref_le))
        occupied = self.between[:-1] > 0
        if occupied.any():
            lowest = max(lowest, float(np.max((cur_lt - ref_before)[occupied])))
        lowest = float(np.clip(lowest, 0, 1))
        d = lowest if lowest > highest else highest
        m, n = sorted([float(n1), float(n2)], reverse=True)
        return d, float(np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))


def numeric_psi(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    """Population stability index over the reference's quantile bins."""
    counts = NumericCounts(reference, bins)
    counts.add(current)
    return counts.psi()


def categorical_psi(
    reference: pd.Series | Mapping[str, int], current: pd.Series | Mapping[str, int]
) -> float:
    """Population stability index over the categories of both samples (values, or counts of each)."""
    ref_counts = _counts(reference)
    cur_counts = _counts(current)
    categories = sorted(ref_counts.keys() | cur_counts.keys())
    ref = np.array([ref_counts.get(c, 0) for c in categories], dtype=float)
    cur = np.array([cur_counts.get(c, 0) for c in categories], dtype=float)
    return _psi(ref / ref.sum(), cur / cur.sum())


def _counts(values: pd.Series | Mapping[str, int]) -> Mapping[str, int]:
    return values if isinstance(values, Mapping) else Counter(values.astype(str))


def _chi_square(reference: Mapping[str, int], current: Mapping[str, int]) -> tuple[float, float]:
    categories = sorted(reference.keys() | current.keys())
    table = np.array([[reference.get(c, 0), current.get(c, 0)] for c in categories], dtype=float)
    table = table[table.sum(axis=1) > 0]
    if len(table) < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


@dataclass
class FeatureCounts:
    """One input feature's logged values so far: missing, present, and their counts on the reference grid."""

    reference: pd.Series
    bins: int
    rows: int = 0
    missing: int = 0
    numbers: NumericCounts | None = None
    categories: Counter[str] = field(default_factory=Counter)
    low: float = np.inf  # The logged numbers' range, for the report's histogram.
    high: float = -np.inf
    plot_counts: np.ndarray | None = None
    plot_edges: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        # The report's histogram: the reference's range in equal steps, logged values beyond it in the ends.
        ref = self.reference.dropna()
        low, high = (float(ref.min()), float(ref.max())) if self.numeric and len(ref) else (0.0, 1.0)
        self.plot_edges = np.histogram_bin_edges([low, high], bins=PLOT_BINS)
        if self.numeric:
            values = self.reference.dropna().to_numpy(dtype=float)
            self.numbers = NumericCounts(values, self.bins)
            self.plot_counts = np.zeros(PLOT_BINS, dtype=np.int64)

    @property
    def numeric(self) -> bool:
        """Whether the reference column is numeric (KS and quantile PSI) or categorical (chi-square)."""
        return pd.api.types.is_numeric_dtype(self.reference)

    @property
    def present(self) -> int:
        """Logged rows with a value."""
        return self.rows - self.missing

    def add(self, values: pd.Series) -> None:
        """Fold more logged values of this feature."""
        present = values.dropna()
        self.rows += len(values)
        self.missing += len(values) - len(present)
        if self.numbers is not None and self.plot_counts is not None:
            numbers = pd.to_numeric(present, errors="coerce").dropna().to_numpy(dtype=float)
            self.numbers.add(numbers)
            which = np.searchsorted(self.plot_edges[1:-1], numbers, side="right")
            self.plot_counts += np.bincount(which, minlength=PLOT_BINS)
        else:
            self.categories.update(present.astype(str))

    def drift(self, name: str, *, tested: int, unseen: float, thresholds: Thresholds) -> FeatureDrift:
        """KS or chi-square, PSI, missing and unseen shares against the reference; `tested` for Bonferroni."""
        ref = self.reference.dropna()
        if self.present == 0:
            statistic, p_value, psi = 0.0, 1.0, 0.0
        elif self.numbers is not None:
            statistic, p_value = self.numbers.ks() if self.numbers.n else (0.0, 1.0)
            psi = self.numbers.psi() if self.numbers.n else 0.0
        else:
            reference = Counter(ref.astype(str))
            statistic, p_value = _chi_square(reference, self.categories)
            psi = categorical_psi(reference, self.categories)
        p_adjusted = min(1.0, p_value * tested)  # Bonferroni over the features tested.
        missing_ref = float(self.reference.isna().mean())
        missing_cur = self.missing / self.rows if self.rows else float("nan")
        reasons = []
        if psi > thresholds.psi:
            reasons.append(f"PSI {psi:.3f} > {thresholds.psi}")
        if p_adjusted < thresholds.p_value:
            reasons.append(
                f"{'KS' if self.numeric else 'chi-square'} p {p_adjusted:.2g} < {thresholds.p_value}"
            )
        if missing_cur - missing_ref > thresholds.missing:
            reasons.append(f"missing {missing_cur:.1%} vs {missing_ref:.1%}")
        if unseen > thresholds.unseen:
            reasons.append(f"unseen categories in {unseen:.1%} of rows")
        return FeatureDrift(
            feature=name, kind="numeric" if self.numeric else "categorical",
            test="ks" if self.numeric else "chi-square", statistic=statistic, p_value=p_value,
            p_adjusted=p_adjusted, psi=psi, missing_reference=missing_ref, missing_current=missing_cur,
            unseen=unseen, drifted=bool(reasons), reasons=reasons,
        )  # fmt: skip


def feature_counts(reference: pd.DataFrame, bins: int) -> dict[str, FeatureCounts]:
    """Empty counts of every reference column."""
    return {name: FeatureCounts(reference[name], bins) for name in reference.columns}


def fold_features(counts: Mapping[str, FeatureCounts], current: pd.DataFrame) -> None:
    """Fold a chunk of logged inputs; a feature the chunk lacks counts as missing."""
    for name, found in counts.items():
        found.add(current[name] if name in current else pd.Series([None] * len(current), dtype=object))


def drift_of(
    counts: Mapping[str, FeatureCounts], *, unseen: Mapping[str, float], thresholds: Thresholds
) -> list[FeatureDrift]:
    """Each feature's drift from its folded counts."""
    return [
        found.drift(name, tested=len(counts), unseen=unseen.get(name, 0.0), thresholds=thresholds)
        for name, found in counts.items()
    ]


def feature_drift(
    reference: pd.DataFrame, current: pd.DataFrame, *, unseen: dict[str, float], thresholds: Thresholds
) -> list[FeatureDrift]:
    """Each reference column against the logged one: KS or chi-square, PSI, missing and unseen shares."""
    counts = feature_counts(reference, thresholds.bins)
    fold_features(counts, current)
    return drift_of(counts, unseen=unseen, thresholds=thresholds)


def score_figures(counts: NumericCounts, thresholds: Thresholds) -> dict[str, Any]:
    """The score distribution, reference against logged: KS and PSI (not corrected: one test)."""
    statistic, p_value = counts.ks()
    psi = counts.psi()
    return {
        "ks_statistic": statistic,
        "p_value": p_value,
        "psi": psi,
        "reference_mean": float(np.mean(counts.reference)),
        "current_mean": counts.mean,
        "drifted": bool(psi > thresholds.psi or p_value < thresholds.p_value),
    }


def score_drift(reference: np.ndarray, current: np.ndarray, thresholds: Thresholds) -> dict[str, Any]:
    """The score distribution, reference against logged: KS and PSI (not corrected: one test)."""
    counts = NumericCounts(reference, thresholds.bins)
    counts.add(current)
    return score_figures(counts, thresholds)


class ExplanationSums:
    """Sum of each feature's |SHAP| over the logged rows that explain every reference feature."""

    def __init__(self, features: Iterable[str]) -> None:
        self.features = list(features)
        self.sums = np.zeros(len(self.features))
        self.rows = 0

    def add(self, contributions: Iterable[Any]) -> None:
        """Fold more rows' contributions; rows missing a feature (top_k answers) are left out."""
        wanted = set(self.features)
        complete = [row for row in contributions if isinstance(row, dict) and wanted <= set(row)]
        if complete:
            values = np.array([[row[name] for name in self.features] for row in complete], dtype=float)
            self.sums += np.abs(values).sum(axis=0)
            self.rows += len(complete)


def explanation_figures(
    reference: dict[str, float], sums: ExplanationSums, thresholds: Thresholds
) -> list[dict[str, Any]]:
    """Each feature's share of the mean |SHAP| in the logged rows against its share in the reference."""
    if not sums.rows:
        return []
    features = sums.features
    logged = sums.sums / sums.rows
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


def explanation_drift(
    reference: dict[str, float], contributions: list[dict[str, float]], thresholds: Thresholds
) -> list[dict[str, Any]]:
    """Each feature's share of the mean |SHAP| in the logged rows against its share in the reference."""
    sums = ExplanationSums(reference)
    sums.add(contributions)
    return explanation_figures(reference, sums, thresholds)


@dataclass
class Span:
    """The first and last of the times folded so far, as the log gave them."""

    first: Any = None
    last: Any = None

    def add(self, times: pd.Series) -> None:
        """Widen the span to a chunk's times."""
        if len(times):
            first, last = times.min(), times.max()
            self.first = first if self.first is None else min(self.first, first)
            self.last = last if self.last is None else max(self.last, last)


class Periods:
    """Rows, positives and the score sum per hour; days are made of hours when the window is long."""

    def __init__(self) -> None:
        self.hours: dict[pd.Timestamp, np.ndarray] = {}
        self.span = Span()

    def add(self, times: pd.Series, positive: pd.Series, scores: pd.Series) -> None:
        """Fold more rows."""
        if not len(times):
            return
        stamps = pd.to_datetime(times, utc=True).reset_index(drop=True)
        self.span.add(stamps)
        frame = pd.DataFrame(
            {
                "period": stamps.dt.floor("h"),
                "positive": positive.to_numpy(dtype=float),
                "score": scores.to_numpy(dtype=float),
            }
        )
        grouped = frame.groupby("period").agg(
            rows=("score", "size"), positives=("positive", "sum"), scores=("score", "sum")
        )
        for period, row in grouped.iterrows():
            found = self.hours.setdefault(period, np.zeros(3))
            found += row.to_numpy(dtype=float)

    def rates(self) -> list[dict[str, Any]]:
        """Positive rate and mean score per day (per hour when the window is shorter than two days)."""
        if self.span.first is None:
            return []
        daily = self.span.last - self.span.first >= pd.Timedelta(days=2)
        merged: dict[pd.Timestamp, np.ndarray] = {}
        for hour, sums in sorted(self.hours.items()):
            merged.setdefault(hour.floor("D") if daily else hour, np.zeros(3))[:] += sums
        return [
            {
                "period": period.isoformat(),
                "rows": float(sums[0]),
                "positive_rate": float(sums[1] / sums[0]),
                "mean_score": float(sums[2] / sums[0]),
            }
            for period, sums in merged.items()
        ]


def rate_over_time(times: pd.Series, positive: pd.Series, scores: pd.Series) -> list[dict[str, Any]]:
    """Positive rate and mean score per day (per hour when the window is shorter than two days)."""
    periods = Periods()
    periods.add(times, positive, scores)
    return periods.rates()
