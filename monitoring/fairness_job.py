"""The fairness job: one version's logged decisions (and outcomes) by protected group, reported three ways."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from pandas.api.types import union_categoricals
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from monitoring import logged, reference
from monitoring.drift import Span
from monitoring.errors import MonitoringError
from monitoring.report import STYLE, png, table
from monitoring.report_run import ReportOutcome, ReportRun, enough_rows, finite, window, window_params
from registry_scripts import fairness

# Summary key -> the report's column heading ("share" is filled in with the compared decision).
GROUP_COLUMNS = {
    "group": "group", "rows": "rows", "counted": "counted", "selection_rate": "share", "labelled": "labelled",
    "true_positive_rate": "TPR", "false_positive_rate": "FPR", "roc_auc": "ROC AUC",
}  # fmt: skip


LOGGED = ["received_at", "input", "prediction", "score", "actual"]


class FairnessThresholds(BaseModel):
    """When the report has enough data; the rule itself is the version's training policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_rows: int = Field(default=100, ge=1, description="fewer logged rows: no report (exit 2)")


class Decisions:
    """Logged decisions folded chunk by chunk: each row's protected groups, decision, score and outcome.

    Some 30 bytes a row: the input documents are reduced to the policy's attributes as they pass (a band's
    number, or a group's name as a category), so the figures count every row without the documents.
    """

    def __init__(self, policy: fairness.FairnessPolicy, positive: str) -> None:
        self.policy = policy
        self.positive = positive
        self.values: dict[str, list[Any]] = {name: [] for name in policy.attributes}
        self.sent: set[str] = set()
        self.columns: dict[str, list[np.ndarray]] = {"decisions": [], "scores": [], "actual": []}
        self.rows = 0
        self.span = Span()

    def add(self, chunk: pd.DataFrame) -> None:
        """Fold a chunk of logged rows (`input`, `prediction`, `score`, `actual`, `received_at`)."""
        if chunk.empty:
            return
        records = [row if isinstance(row, dict) else {} for row in chunk["input"]]
        for name, attribute in self.policy.attributes.items():
            raw = pd.Series([record.get(name) for record in records], dtype=object)
            if any(name in record for record in records):
                self.sent.add(name)
            if attribute.bands:
                self.values[name].append(pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float))
            else:
                self.values[name].append(pd.Categorical(fairness.groups(raw, attribute)))
        self.columns["decisions"].append((chunk["prediction"] == self.positive).to_numpy(dtype=np.int64))
        self.columns["scores"].append(chunk["score"].to_numpy(dtype=np.float64))
        self.columns["actual"].append(
            pd.to_numeric(chunk["actual"], errors="coerce").to_numpy(dtype=np.float64)
        )
        self.rows += len(chunk)
        self.span.add(chunk["received_at"])

    def attributes(self) -> pd.DataFrame:
        """The protected attributes the logged inputs carry; one a client never sends is left out."""
        columns: dict[str, Any] = {}
        for name in self.values:
            if name not in self.sent:
                continue
            parts = self.values[name]
            if self.policy.attributes[name].bands:
                columns[name] = pd.Series(np.concatenate(parts))
            else:
                columns[name] = pd.Series(union_categoricals(parts, ignore_order=True))
        return pd.DataFrame(columns, index=pd.RangeIndex(self.rows))

    def column(self, key: str) -> np.ndarray:
        """One folded column: decisions, scores or actual."""
        return np.concatenate(self.columns[key])


def run(
    client: MlflowClient,
    engine: Engine,
    *,
    model: str,
    version: int | None,
    since: datetime | None,
    until: datetime | None,
    out: Path,
    thresholds: FairnessThresholds,
) -> ReportOutcome:
    """Assess, write the HTML report and JSON summary, and log both to an MLflow run."""
    version = reference.resolve_version(client, model, version)
    facts = reference.facts(client, model, version)
    trained = fairness.recorded(facts.run_id)
    if trained is None:
        raise MonitoringError(
            f"model {model!r} version {version} was trained without a `fairness:` config: "
            "no protected attributes to assess"
        )
    policy = fairness.FairnessPolicy.model_validate(trained["policy"])
    enough_rows(engine, model=model, version=version, since=since, until=until, least=thresholds.min_rows)
    folded = Decisions(policy, facts.labels[1])
    for chunk in logged.predictions(
        engine, model_name=model, version=version, since=since, until=until, columns=LOGGED
    ):
        folded.add(chunk)
    found = fairness.assess(
        folded.attributes(),
        decisions=folded.column("decisions"),
        scores=folded.column("scores"),
        actual=folded.column("actual"),
        policy=policy,
        source="traffic",
    )
    created = datetime.now(UTC)
    summary = finite(
        {
            "model": model,
            "version": version,
            "created_at": created.isoformat(timespec="seconds"),
            "window": window(folded.span, since, until),
            **found,
            "holdout": {
                item["attribute"]: {
                    key: item[key] for key in ("demographic_parity_ratio", "equalized_odds_difference")
                }
                for item in trained["attributes"]
            },
        }
    )
    return _report_run(summary, facts.experiment_id).publish(out, created, summary, _render(summary))


def _render(summary: dict[str, Any]) -> str:
    """One offline page: the verdict, each attribute's figures against the holdout's, and the plot."""
    min_ratio = summary["policy"]["min_ratio"]
    flagged = summary["flagged"]
    verdict = (
        f"{', '.join(flagged)} under the four-fifths rule ({min_ratio:g})"
        if flagged
        else f"no attribute under {min_ratio:g}"
    )
    chosen = "flagged" if summary["policy"]["selected"] == "positive" else "not flagged"
    headings = {**GROUP_COLUMNS, "selection_rate": f"share {chosen}"}
    parts = [
        f"<h1>{html.escape(summary['model'])} version {summary['version']}: decisions by group</h1>",
        f"<p>{summary['rows']} logged rows from {summary['window']['first']} to {summary['window']['last']}, "
        f"{summary['labelled']} with an observed outcome. The rate compared is the share {chosen}; groups "
        f"under {summary['policy']['min_group_rows']} rows are shown, not counted.</p>",
        f'<p class="verdict {"bad" if flagged else "good"}">{html.escape(verdict)}</p>',
    ]
    for item in summary["attributes"]:
        holdout = summary["holdout"].get(item["attribute"], {})
        ratio, odds = holdout.get("demographic_parity_ratio"), holdout.get("equalized_odds_difference")
        parts.append(
            f"<h2>{html.escape(fairness.describe(item, min_ratio))}</h2>"
            f"<p>On the holdout at training: ratio {fairness.figure(ratio)}, "
            f"equalized-odds difference {fairness.figure(odds)}.</p>"
            + table(
                [{headings[k]: v for k, v in row.items()} for row in item["groups"]], list(headings.values())
            )
        )
    if summary["unavailable"]:
        parts.append(
            f"<p>Not in the logged inputs, so not assessed: {html.escape(', '.join(summary['unavailable']))}"
            ".</p>"
        )
    if summary["attributes"]:
        parts.append(f"<h2>by group</h2>{png(fairness.plot(summary))}")
    return f"<!doctype html><meta charset=utf-8><title>fairness</title><style>{STYLE}</style>{''.join(parts)}"


def _report_run(summary: dict[str, Any], experiment_id: str) -> ReportRun:
    metrics = {"rows": summary["rows"], "labelled": summary["labelled"]}
    for item in summary["attributes"]:
        for key in ("demographic_parity_ratio", "equalized_odds_difference"):
            metrics[fairness.metric_key(item["attribute"], key)] = item[key]
    return ReportRun(
        kind="fairness",
        name=f"fairness-{summary['model']}-v{summary['version']}",
        experiment_id=experiment_id,
        tags={
            "model_name": summary["model"],
            "model_version": str(summary["version"]),
            "flagged": ",".join(summary["flagged"]) or "none",
        },
        params=window_params(summary),
        metrics=metrics,
    )
