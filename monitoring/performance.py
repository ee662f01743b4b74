"""Realised performance from observed outcomes: pure functions of labels, scores and decisions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

MIN_LABELLED = 20  # Fewer labelled rows in a period: its figures are too noisy to show.


def _figures(frame: pd.DataFrame, costs: dict[str, float]) -> dict[str, Any]:
    y = frame["actual"].to_numpy(dtype=int)
    scores = frame["score"].to_numpy(dtype=float)
    flagged = frame["flagged"].to_numpy(dtype=int)
    cost = costs["false_negative"] * np.sum((y == 1) & (flagged == 0)) + costs["false_positive"] * np.sum(
        (y == 0) & (flagged == 1)
    )
    both = len(np.unique(y)) == 2
    return {
        "labelled": len(y),
        "positive_rate": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, scores)) if both else None,
        "brier": float(brier_score_loss(y, scores, labels=[0, 1])),
        "business_cost_per_case": float(cost / len(y)),
    }


def realised(frame: pd.DataFrame, costs: dict[str, float]) -> dict[str, Any]:
    """ROC AUC, Brier, cost per case and calibration of labelled rows, overall and per period."""
    labelled = frame.dropna(subset=["actual"])
    if labelled.empty:
        return {"labelled": 0}
    overall = _figures(labelled, costs)
    stamps = pd.to_datetime(labelled["received_at"], utc=True)
    freq = "h" if stamps.max() - stamps.min() < pd.Timedelta(days=2) else "D"
    periods = [
        {"period": period.isoformat(), **_figures(group, costs)}
        for period, group in labelled.groupby(stamps.dt.floor(freq))
        if len(group) >= MIN_LABELLED
    ]
    bins = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(labelled["score"], bins[1:-1]), 0, 9)
    calibration = [
        {
            "bin": f"{bins[i]:.1f}-{bins[i + 1]:.1f}",
            "rows": int(np.sum(which == i)),
            "mean_score": float(labelled["score"][which == i].mean()),
            "observed_rate": float(labelled["actual"][which == i].mean()),
        }
        for i in range(10)
        if np.any(which == i)
    ]
    return {**overall, "periods": periods, "calibration": calibration}
