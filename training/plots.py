"""Evaluation and explanation figures logged with each training run."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import matplotlib

matplotlib.use("Agg")  # Headless: training runs on servers and in CI.

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import shap
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=(6, 5), layout="constrained")
    return figure, figure.add_subplot()


def _curves(y: np.ndarray, scores: dict[str, np.ndarray], draw: Callable[..., object], title: str) -> Figure:
    figure, ax = _figure()
    for name, values in scores.items():
        draw(y, values, name=name, ax=ax)
    ax.set_title(title)
    return figure


def roc_curve(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Holdout ROC curves of the model and the baseline."""
    return _curves(y, scores, RocCurveDisplay.from_predictions, "ROC curve (holdout)")


def precision_recall(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Holdout precision-recall curves of the model and the baseline."""
    return _curves(y, scores, PrecisionRecallDisplay.from_predictions, "Precision-recall (holdout)")


def calibration(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Reliability diagram: predicted probability against observed frequency."""
    draw = partial(CalibrationDisplay.from_predictions, n_bins=10, strategy="quantile")
    return _curves(y, scores, draw, "Calibration (holdout)")


def importance(contributions: np.ndarray, names: list[str]) -> Figure:
    """Mean absolute SHAP contribution of each raw feature."""
    mean_abs = np.abs(contributions).mean(axis=0)
    order = np.argsort(mean_abs)
    figure = Figure(figsize=(7, max(3.0, 0.28 * len(names))), layout="constrained")
    ax = figure.add_subplot()
    ax.barh([names[i] for i in order], mean_abs[order])
    ax.set_xlabel("mean |SHAP value| (log-odds)")
    ax.set_title("Feature importance (holdout)")
    return figure


def shap_summary(values: np.ndarray, encoded: pd.DataFrame) -> Figure:
    """SHAP beeswarm of the encoded features."""
    # Its own generator: the jitter must not depend on (or warn about) NumPy's global state.
    shap.summary_plot(values, encoded, show=False, max_display=20, rng=np.random.default_rng(0))
    figure = plt.gcf()
    figure.suptitle("SHAP summary (holdout)")
    plt.close(figure)
    return figure
