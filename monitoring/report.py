"""The drift report as one self-contained HTML file: tables and PNG plots inlined, nothing fetched."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # Headless: reports are made by schedulers and in CI.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from monitoring.drift import FeatureCounts

MAX_FEATURE_PLOTS = 12
SCORE_BINS = np.linspace(0, 1, 21)
FEATURE_COLUMNS = [
    "feature", "kind", "test", "statistic", "p_adjusted", "psi", "missing_reference", "missing_current",
    "unseen", "reasons",
]  # fmt: skip
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}tr.drift{background:#fde2e1}
.verdict{font-size:1.1em;padding:.6em 1em;border-radius:4px;display:inline-block}
.bad{background:#fde2e1}.good{background:#e0f5e4}.grid img{width:32%}img{max-width:100%}
"""


def png(figure: Figure) -> str:
    """A figure as an inlined PNG <img> tag."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def paired_scores_plot(served: np.ndarray, challenger: np.ndarray, labels: tuple[str, str]) -> str:
    """Each row's two scores, one against the other, with the diagonal where they agree."""
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.scatter(served, challenger, s=6, alpha=0.5)
    axes.plot([0, 1], [0, 1], color="grey", linewidth=1)
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    axes.set_title("scores of the same rows")
    return png(figure)


def _feature_plot(name: str, reference: pd.Series, logged: FeatureCounts) -> str:
    figure, axis = plt.subplots(figsize=(4, 2.6))
    if logged.plot_counts is not None:
        edges = logged.plot_edges
        ref = reference.dropna().to_numpy(dtype=float)
        axis.hist(ref, bins=edges.tolist(), density=True, alpha=0.5, label="reference")
        # Logged values beyond the reference's range are counted in the end bins.
        axis.hist(edges[:-1], bins=edges.tolist(), weights=logged.plot_counts, density=True, alpha=0.5,
                  label="logged")  # fmt: skip
    else:
        present = sum(logged.categories.values())
        logged_shares = pd.Series(
            {key: count / present for key, count in logged.categories.items()} if present else {}, dtype=float
        )
        shares = pd.concat(
            [reference.astype(str).value_counts(normalize=True), logged_shares],
            axis=1,
            keys=["reference", "logged"],
        ).fillna(0)
        shares.head(10).plot.bar(ax=axis, rot=30)
    axis.set_title(name, fontsize=10)
    axis.legend(fontsize=7)
    return png(figure)


def _scores_plot(reference: np.ndarray, counts: np.ndarray) -> str:
    figure, axis = plt.subplots(figsize=(5, 3))
    bins = SCORE_BINS.tolist()
    axis.hist(reference, bins=bins, density=True, alpha=0.5, label="reference (training sample)")
    axis.hist(SCORE_BINS[:-1], bins=bins, weights=counts, density=True, alpha=0.5, label="logged")
    axis.set_xlabel("score")
    axis.legend(fontsize=8)
    return png(figure)


def _over_time_plot(rates: list[dict[str, Any]]) -> str:
    frame = pd.DataFrame(rates)
    figure, axis = plt.subplots(figsize=(7, 3))
    periods = pd.to_datetime(frame["period"])
    axis.plot(periods, frame["positive_rate"], marker="o", label="positive rate")
    axis.plot(periods, frame["mean_score"], marker="s", label="mean score")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=8)
    figure.autofmt_xdate()
    return png(figure)


def _explanation_plot(explanations: list[dict[str, Any]]) -> str:
    frame = pd.DataFrame(explanations).set_index("feature")
    top = frame.assign(top=frame[["reference_share", "current_share"]].max(axis=1)).nlargest(15, "top")
    figure, axis = plt.subplots(figsize=(7, 4))
    top[["reference_share", "current_share"]].iloc[::-1].plot.barh(ax=axis)
    axis.set_xlabel("share of mean |SHAP|")
    return png(figure)


def _calibration_plot(calibration: list[dict[str, Any]]) -> str:
    frame = pd.DataFrame(calibration)
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--")
    axis.plot(frame["mean_score"], frame["observed_rate"], marker="o")
    axis.set_xlabel("mean score")
    axis.set_ylabel("observed positive rate")
    return png(figure)


def table(rows: list[dict[str, Any]], columns: list[str], flag: str | None = None) -> str:
    """An HTML table of `rows` by `columns`; a row whose `flag` is true is marked."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, list):
            return html.escape("; ".join(map(str, value)))
        return html.escape("" if value is None else str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr{' class=drift' if flag and row.get(flag) else ''}>"
        + "".join(f"<td>{cell(row.get(c))}</td>" for c in columns)
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render(
    summary: dict[str, Any],
    reference: pd.DataFrame,
    logged: Mapping[str, FeatureCounts],
    *,
    reference_scores: np.ndarray,
    score_counts: np.ndarray,
) -> str:
    """The HTML report of one drift run."""
    features = summary["features"]
    drifted = [f["feature"] for f in features if f["drifted"]]
    shown = drifted + [
        f["feature"]
        for f in sorted(features, key=lambda f: -(f["psi"] or 0.0))
        if f["feature"] not in drifted
    ]
    plots = "".join(
        _feature_plot(name, reference[name], logged[name])
        for name in shown[: max(MAX_FEATURE_PLOTS, len(drifted))]
    )
    verdict = (
        f'<p class="verdict bad">Drift: {html.escape(", ".join(summary["drifted"]))}</p>'
        if summary["drift"]
        else '<p class="verdict good">No drift found.</p>'
    )
    parts = [
        f"<h1>Drift report: {html.escape(summary['model'])} version {summary['version']}</h1>",
        f"<p>{summary['rows']} logged rows from {html.escape(str(summary['window']['first']))} to "
        f"{html.escape(str(summary['window']['last']))}, against {summary['reference_rows']} training rows. "
        f"Made {html.escape(summary['created_at'])}.</p>",
        verdict,
        "<h2>Input features</h2>",
        table(features, FEATURE_COLUMNS, flag="drifted"),
        f'<div class="grid">{plots}</div>',
        "<h2>Scores</h2>",
        table([summary["scores"]], list(summary["scores"]), flag="drifted"),
        _scores_plot(reference_scores, score_counts),
        "<h2>Positive rate over time</h2>",
        _over_time_plot(summary["over_time"]) if summary["over_time"] else "<p>No rows.</p>",
    ]
    if summary["explanations"]:
        parts += [
            "<h2>Explanation drift</h2><p>Each feature's share of the mean absolute SHAP contribution.</p>",
            table(
                summary["explanations"],
                ["feature", "reference_mean_abs", "current_mean_abs", "reference_share", "current_share"],
                flag="drifted",
            ),
            _explanation_plot(summary["explanations"]),
        ]
    parts.append("<h2>Realised performance</h2>")
    performance = summary["performance"]
    if not performance:
        parts.append("<p>No observed outcomes yet (POST /feedback or python -m monitoring outcomes).</p>")
    for version, figures in performance.items():
        parts.append(f"<h3>Version {html.escape(version)}</h3>")
        parts.append(
            table(
                [{"figures": "realised", **figures}, {"figures": "holdout (training)", **figures["holdout"]}],
                ["figures", "labelled", "roc_auc", "brier", "business_cost_per_case", "positive_rate"],
            )
        )
        if figures.get("periods"):
            parts.append(
                table(
                    figures["periods"], ["period", "labelled", "roc_auc", "brier", "business_cost_per_case"]
                )
            )
        if figures.get("calibration"):
            parts.append(_calibration_plot(figures["calibration"]))
    parts += ["<h2>Thresholds</h2>", table([summary["thresholds"]], list(summary["thresholds"]))]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Drift: {html.escape(summary['model'])} v{summary['version']}</title><style>{STYLE}</style>"
        f"</head><body>{''.join(parts)}</body></html>"
    )
