"""Champion against challenger on the same logged rows: pure functions of both versions' answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from scipy.stats import ks_2samp
from sklearn.metrics import brier_score_loss

from monitoring.drift import Span, numeric_psi
from registry_scripts.reports import auc_worse, paired_auc_difference, roc_auc

TOP_REASONS = 3
MAX_FLIPS_SHOWN = 50  # Flipped rows listed in the summary, with both versions' reasons.


class CompareThresholds(BaseModel):
    """When the comparison has enough data, and when it objects."""

    min_rows: int = Field(default=100, ge=1, description="fewer shadowed rows: not enough data (exit 2)")
    max_flip_rate: float = Field(default=0.15, ge=0, le=1, description="more decisions flipped: objection")
    min_labelled: int = Field(default=100, ge=10, description="labelled rows needed to compare realised AUC")
    auc_tolerance: float = Field(
        default=0.01, ge=0, description="challenger's realised AUC may be this lower, or its interval reach 0"
    )
    bootstrap: int = Field(default=1000, ge=100, le=100_000, description="paired bootstrap rounds")
    seed: int = Field(default=0, description="seed of the bootstrap")


def top_reasons(contributions: dict[str, float] | None, k: int = TOP_REASONS) -> list[str]:
    """The k features with the largest |contribution|."""
    if not contributions:
        return []
    return [name for name, _ in sorted(contributions.items(), key=lambda item: -abs(item[1]))[:k]]


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    found = values[~np.isnan(values)]
    if not len(found):
        return {"p50": None, "p99": None}
    return {"p50": float(np.percentile(found, 50)), "p99": float(np.percentile(found, 99))}


def _realised(
    y: np.ndarray, scores: np.ndarray, flagged: np.ndarray, costs: dict[str, float]
) -> dict[str, float]:
    missed = np.sum((y == 1) & ~flagged)
    alarms = np.sum((y == 0) & flagged)
    return {
        "roc_auc": roc_auc(y, scores),
        "brier": float(brier_score_loss(y, scores, labels=[0, 1])),
        "business_cost_per_case": float(
            (costs["false_negative"] * missed + costs["false_positive"] * alarms) / len(y)
        ),
    }


def _overlap(contributions: pd.Series, shadow_contributions: pd.Series) -> np.ndarray:
    return np.array(
        [
            len(set(top_reasons(a)) & set(top_reasons(b))) / TOP_REASONS
            for a, b in zip(contributions, shadow_contributions, strict=True)
        ],
        dtype=float,
    )


class Shadowed:
    """Shadowed rows folded chunk by chunk: their explanations never held, some 50 bytes a row kept.

    Rank statistics (KS, quantile PSI, percentiles, the bootstrap) need every score, so the scores,
    thresholds and labels stay as numbers; each row's contributions are reduced to its top-reason overlap
    as it passes, and only the first flipped rows keep theirs for the report.
    """

    def __init__(self) -> None:
        self.errors = 0
        self.columns: dict[str, list[np.ndarray]] = {
            key: [] for key in ("score", "shadow_score", "threshold", "shadow_threshold", "actual", "overlap")
        }
        self.latency: dict[str, list[np.ndarray]] = {"champion": [], "challenger": []}
        self.flipped: list[dict[str, Any]] = []
        self.last_request: Any = None
        self.span = Span()

    def add(self, rows: pd.DataFrame) -> None:
        """Fold a chunk of shadowed rows, in the order of their requests (see `compare`)."""
        if rows.empty:
            return
        if "received_at" in rows:
            self.span.add(rows["received_at"])
        requests = rows["request_id"]
        starts = (requests != requests.shift()).to_numpy(copy=True)
        starts[0] = requests.iloc[0] != self.last_request  # A request may go on from the chunk before.
        self.last_request = requests.iloc[-1]
        self.latency["champion"].append(rows["upstream_ms"].to_numpy(dtype=float)[starts])
        self.latency["challenger"].append(rows["shadow_latency_ms"].to_numpy(dtype=float)[starts])
        failed = rows["shadow_error"].notna()
        self.errors += int(failed.sum())
        answered = rows[~failed]
        for key in ("score", "shadow_score", "threshold", "shadow_threshold"):
            self.columns[key].append(answered[key].to_numpy(dtype=float))
        self.columns["actual"].append(
            pd.to_numeric(answered["actual"], errors="coerce").to_numpy(dtype=float)
        )
        self.columns["overlap"].append(_overlap(answered["contributions"], answered["shadow_contributions"]))
        if len(self.flipped) < MAX_FLIPS_SHOWN:
            flagged = answered["score"].to_numpy(float) >= answered["threshold"].to_numpy(float)
            shadow_flagged = answered["shadow_score"].to_numpy(float) >= answered[
                "shadow_threshold"
            ].to_numpy(float)
            flips = answered[flagged != shadow_flagged].head(MAX_FLIPS_SHOWN - len(self.flipped))
            self.flipped += [
                {
                    "request_id": str(row.request_id),
                    "row_index": int(row.row_index),
                    "score": float(row.score),
                    "shadow_score": float(row.shadow_score),
                    "reasons": top_reasons(row.contributions),
                    "shadow_reasons": top_reasons(row.shadow_contributions),
                }
                for row in flips.itertuples()
            ]

    def column(self, key: str) -> np.ndarray:
        """One folded column of the answered rows."""
        return np.concatenate(self.columns[key]) if self.columns[key] else np.array([], dtype=float)

    def summary(self, *, costs: dict[str, float], thresholds: CompareThresholds) -> dict[str, Any]:
        """Agreement, score shift, reasons, latency, errors and (with outcomes) realised metrics of both."""
        champion, challenger = self.column("score"), self.column("shadow_score")
        summary: dict[str, Any] = {
            "rows": len(champion),
            "shadow_errors": self.errors,
            "latency_ms": {side: _percentiles(np.concatenate(found) if found else np.array([]))
                           for side, found in self.latency.items()},
        }  # fmt: skip
        if len(champion) < thresholds.min_rows:
            summary["verdict"] = "not enough data"
            summary["reasons"] = [
                f"{len(champion)} shadowed rows answered, {thresholds.min_rows} needed (--min-rows)"
            ]
            return summary
        threshold, shadow_threshold = self.column("threshold"), self.column("shadow_threshold")
        flagged = champion >= threshold
        shadow_flagged = challenger >= shadow_threshold
        overlap = self.column("overlap")
        summary.update(
            {
                "decisions": {
                    "agreement": float(np.mean(flagged == shadow_flagged)),
                    "flip_rate": float(np.mean(flagged != shadow_flagged)),
                    "flagged_only_by_challenger": int(np.sum(~flagged & shadow_flagged)),
                    "flagged_only_by_champion": int(np.sum(flagged & ~shadow_flagged)),
                    "champion_flag_rate": float(flagged.mean()),
                    "challenger_flag_rate": float(shadow_flagged.mean()),
                },
                "scores": {
                    "ks": float(ks_2samp(champion, challenger).statistic),
                    "psi": numeric_psi(champion, challenger, bins=10),
                    "mean_abs_difference": float(np.mean(np.abs(champion - challenger))),
                },
                "top_reasons": {
                    "mean_overlap": float(np.mean(overlap)),
                    "identical_share": float(np.mean(overlap == 1.0)),
                },
                "flipped": self.flipped,
            }
        )
        objections = []
        if summary["shadow_errors"]:
            objections.append(f"{summary['shadow_errors']} shadow calls failed")
        flip_rate = summary["decisions"]["flip_rate"]
        if flip_rate > thresholds.max_flip_rate:
            objections.append(f"flip rate {flip_rate:.3f} over {thresholds.max_flip_rate}")
        actual = self.column("actual")
        labelled = ~np.isnan(actual)
        summary["labelled"] = int(labelled.sum())
        y = actual[labelled].astype(int)
        if len(y) >= thresholds.min_labelled and 0 < y.sum() < len(y):
            lab_champion, lab_challenger = champion[labelled], challenger[labelled]
            summary["realised"] = {
                "champion": _realised(y, lab_champion, flagged[labelled], costs),
                "challenger": _realised(y, lab_challenger, shadow_flagged[labelled], costs),
                "auc_difference": paired_auc_difference(
                    y, lab_champion, lab_challenger, rounds=thresholds.bootstrap, seed=thresholds.seed
                ),
            }
            auc = summary["realised"]["auc_difference"]
            if auc_worse(auc["difference"], auc["high"], thresholds.auc_tolerance):
                objections.append(
                    f"realised ROC AUC {auc['difference']:+.4f} against the champion's, 95% interval "
                    f"[{auc['low']:+.4f}, {auc['high']:+.4f}] (tolerance {thresholds.auc_tolerance})"
                )
        summary["verdict"] = "objection" if objections else "no objection"
        summary["reasons"] = objections
        return summary


def compare(rows: pd.DataFrame, *, costs: dict[str, float], thresholds: CompareThresholds) -> dict[str, Any]:
    """Agreement, score shift, reasons, latency, errors and (with outcomes) realised metrics of both versions.

    `rows`: one per shadowed row, a request's rows together, with `request_id`, `row_index`,
    `received_at`, and `score`, `threshold`, `contributions`, `upstream_ms` of the champion, the same with
    a `shadow_` prefix for the challenger (and `shadow_error`, `shadow_latency_ms`), and `actual` (the
    observed outcome, or missing).
    """
    folded = Shadowed()
    folded.add(rows)
    return folded.summary(costs=costs, thresholds=thresholds)
