"""Evaluation and explanation figures logged with each training run."""

from __future__ import annotations

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


def roc_curve(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Holdout ROC curves of the model and the baseline."""
    figure, ax = _figure()
    for name, values in scores.items():
        RocCurveDisplay.from_predictions(y, values, name=name, ax=ax)
    ax.set_title("ROC curve (holdout)")
    return figure


def precision_recall(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Holdout precision-recall curves of the model and the baseline."""
    figure, ax = _figure()
    for name, values in scores.items():
        PrecisionRecallDisplay.from_predictions(y, values, name=name, ax=ax)
    ax.set_title("Precision-recall (holdout)")
    return figure


def calibration(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Reliability diagram: predicted probability against observed frequency."""
    figure, ax = _figure()
    for name, values in scores.items():
        CalibrationDisplay.from_predictions(y, values, n_bins=10, strategy="quantile", name=name, ax=ax)
    ax.set_title("Calibration (holdout)")
    return figure


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
    shap.summary_plot(values, encoded, show=False, max_display=20)
    figure = plt.gcf()
    figure.suptitle("SHAP summary (holdout)")
    plt.close(figure)
    return figure
