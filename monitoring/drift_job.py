"""The drift job (`python -m monitoring drift`): a version's logged traffic against its training reference."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine

from monitoring import drift, logged, performance, reference
from monitoring.report import SCORE_BINS, render
from monitoring.report_run import ReportOutcome, ReportRun, enough_rows, finite, window, window_params
from registry_scripts.reports import DriftSummary


def inputs(records: pd.Series, features: list[str]) -> pd.DataFrame:
    """The logged input documents of a chunk as columns (missing where a row lacks one)."""
    return pd.DataFrame.from_records(
        [row if isinstance(row, dict) else {} for row in records], columns=features
    )


@dataclass(frozen=True)
class Comparison:
    """Inputs, scores and explanations of logged rows against the reference."""

    features: list[drift.FeatureDrift]
    scores: dict[str, Any]
    explanations: list[dict[str, Any]]

    @property
    def drifted(self) -> list[str]:
        """Input features that drifted."""
        return [f.feature for f in self.features if f.drifted]

    @property
    def explained(self) -> list[str]:
        """Features whose share of the explanation drifted."""
        return [e["feature"] for e in self.explanations if e["drifted"]]

    @property
    def any(self) -> bool:
        """Whether anything drifted."""
        return bool(self.drifted or self.explained or self.scores["drifted"])


class Folded:
    """Logged rows folded chunk by chunk into what the drift report needs; memory set by the reference."""

    def __init__(self, ref: reference.Reference, thresholds: drift.Thresholds) -> None:
        self.ref = ref
        self.thresholds = thresholds
        self.features = drift.feature_counts(ref.features, thresholds.bins)
        self.scores = drift.NumericCounts(ref.scores, thresholds.bins)
        self.score_plot = np.zeros(len(SCORE_BINS) - 1, dtype=np.int64)
        self.explanations = drift.ExplanationSums(ref.shap_mean_abs)
        self.periods = drift.Periods()
        self.unseen: Counter[str] = Counter()
        self.rows = 0
        self.span = drift.Span()

    def add(self, current: pd.DataFrame, outputs: pd.DataFrame) -> None:
        """Fold logged inputs (one column a feature) and the model's outputs for them."""
        drift.fold_features(self.features, current)
        scores = outputs["score"].to_numpy(dtype=float)
        self.scores.add(scores)
        self.score_plot += np.histogram(scores, bins=SCORE_BINS)[0]
        self.explanations.add(outputs["contributions"])
        self.unseen.update(
            name for flags in outputs["unseen_categories"] if isinstance(flags, list) for name in flags
        )
        self.rows += len(outputs)

    def add_logged(self, chunk: pd.DataFrame) -> None:
        """Fold a chunk of logged rows (`input`, `score`, `prediction`, ... and `received_at`)."""
        self.add(inputs(chunk["input"], list(self.ref.features.columns)), chunk)
        self.periods.add(
            chunk["received_at"], chunk["prediction"] == self.ref.facts.labels[1], chunk["score"]
        )
        self.span.add(chunk["received_at"])

    def comparison(self) -> Comparison:
        """Every figure of the rows folded so far."""
        unseen = {name: count / self.rows for name, count in self.unseen.items()} if self.rows else {}
        return Comparison(
            drift.drift_of(self.features, unseen=unseen, thresholds=self.thresholds),
            drift.score_figures(self.scores, self.thresholds),
            drift.explanation_figures(self.ref.shap_mean_abs, self.explanations, self.thresholds),
        )


def compare(
    ref: reference.Reference, current: pd.DataFrame, outputs: pd.DataFrame, thresholds: drift.Thresholds
) -> Comparison:
    """Logged inputs and the model's outputs for them (score, contributions, unseen) against `ref`."""
    folded = Folded(ref, thresholds)
    folded.add(current, outputs)
    return folded.comparison()


LOGGED = ["received_at", "input", "score", "prediction", "contributions", "unseen_categories"]
LABELLED = ["received_at", "model_version", "score", "prediction", "actual"]


def _performance(
    client: MlflowClient, engine: Engine, model: str, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    # Labelled rows without their documents: some 40 bytes a row, for ranks (ROC AUC) and periods.
    chunks = logged.predictions(
        engine, model_name=model, version=None, since=since, until=until, columns=LABELLED,
        labelled_only=True,
    )  # fmt: skip
    found = list(chunks)
    if not found:
        return {}
    labelled = pd.concat(found, ignore_index=True)
    results = {}
    for version, rows in labelled.groupby("model_version"):
        facts = reference.facts(client, model, int(version))
        figures = performance.realised(
            rows.assign(flagged=rows["prediction"] == facts.labels[1], actual=rows["actual"].astype(float)),
            facts.costs,
        )
        figures["holdout"] = {key.removeprefix("holdout_"): value for key, value in facts.holdout.items()}
        results[str(int(version))] = figures
    return results


def run(
    client: MlflowClient,
    engine: Engine,
    *,
    model: str,
    version: int | None,
    since: datetime | None,
    until: datetime | None,
    out: Path,
    thresholds: drift.Thresholds,
) -> ReportOutcome:
    """Compare, write the HTML report and JSON summary, and log both to an MLflow run."""
    version = reference.resolve_version(client, model, version)
    ref = reference.load(client, model, version)
    enough_rows(engine, model=model, version=version, since=since, until=until, least=thresholds.min_rows)
    folded = Folded(ref, thresholds)
    for chunk in logged.predictions(
        engine, model_name=model, version=version, since=since, until=until, columns=LOGGED
    ):
        folded.add_logged(chunk)
    found = folded.comparison()
    scores = found.scores
    drifted, explained = found.drifted, found.explained
    created = datetime.now(UTC)
    summary: dict[str, Any] = {
        "model": model,
        "version": version,
        "created_at": created.isoformat(timespec="seconds"),
        "window": window(folded.span, since, until),
        "rows": folded.rows,
        "reference_rows": len(ref.features),
        "thresholds": thresholds.model_dump(),
        "drift": found.any,
        "drifted": drifted
        + [f"{name} (explanation)" for name in explained]
        + (["score"] if scores["drifted"] else []),
        "drifted_features": drifted,
        "explanation_drifted_features": explained,
        "features": [f.as_json() for f in found.features],
        "scores": scores,
        "over_time": folded.periods.rates(),
        "explanations": found.explanations,
        "performance": _performance(client, engine, model, since, until),
    }
    # Checked against the contract serving reads back (`GET /drift`) before anything is written.
    summary = DriftSummary.model_validate(finite(summary)).model_dump(mode="json", exclude={"run_id"})
    page = render(
        summary, ref.features, folded.features, reference_scores=ref.scores, score_counts=folded.score_plot
    )
    return _report_run(summary, ref.facts.experiment_id).publish(out, created, summary, page)


def _report_run(summary: dict[str, Any], experiment_id: str) -> ReportRun:
    metrics = {
        "rows": summary["rows"],
        "drifted_features": len(summary["drifted_features"]),
        "explanation_drifted_features": len(summary["explanation_drifted_features"]),
        "score_psi": summary["scores"]["psi"],
        "score_ks_p_value": summary["scores"]["p_value"],
        "mean_score": summary["scores"]["current_mean"],
        **{f"psi.{f['feature']}": f["psi"] for f in summary["features"]},
        **{f"explanation_share.{e['feature']}": e["current_share"] for e in summary["explanations"]},
    }
    for version, figures in summary["performance"].items():
        for key in ("labelled", "roc_auc", "brier", "business_cost_per_case"):
            if figures.get(key) is not None:
                metrics[f"realised_v{version}_{key}"] = figures[key]
    return ReportRun(
        kind="drift",
        name=f"drift-{summary['model']}-v{summary['version']}",
        experiment_id=experiment_id,
        tags={
            "model_name": summary["model"],
            "model_version": str(summary["version"]),
            "drift": str(summary["drift"]).lower(),
        },
        params={**{f"threshold.{k}": v for k, v in summary["thresholds"].items()}, **window_params(summary)},
        metrics=metrics,
    )
