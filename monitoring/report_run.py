"""What every monitoring report does around its figures: its window, its folder and its MLflow run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.environment_variables import MLFLOW_RUN_ID
from sqlalchemy import Engine

from monitoring import drift, logged
from monitoring.errors import MonitoringError


@dataclass(frozen=True)
class ReportOutcome:
    """Where a report went, what it found, and the MLflow run that holds it."""

    summary: dict[str, Any]
    directory: Path
    run_id: str


@dataclass(frozen=True)
class ReportRun:
    """How one report is recorded: its kind (`drift`, `compare`, `fairness`), name, tags, params, metrics."""

    kind: str
    name: str  # The run's name and, with the time, the report folder's.
    experiment_id: str  # The model version's training experiment, unless under `mlflow run`.
    tags: dict[str, str]
    metrics: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)

    def save(self, out: Path, created: datetime, summary: dict[str, Any], page: str) -> Path:
        """Write `summary.json` and `report.html` into the report's own folder under `out`."""
        directory = out / f"{self.name}-{created.strftime('%Y%m%dT%H%M%SZ')}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "summary.json").write_text(
            json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8"
        )
        (directory / "report.html").write_text(page, encoding="utf-8")
        return directory

    def log(self, directory: Path) -> str:
        """Log the tags, params, metrics and the folder (as `<kind>_report`) to a new run; its id."""
        # Under `mlflow run`, the run it made (in the experiment it was told) is the one to fill.
        experiment = None if MLFLOW_RUN_ID.get() else self.experiment_id
        with mlflow.start_run(experiment_id=experiment, run_name=self.name) as run:
            mlflow.set_tags({"monitoring": self.kind, **self.tags})
            if self.params:
                mlflow.log_params(self.params)
            mlflow.log_metrics(
                {key: float(value) for key, value in self.metrics.items() if value is not None}
            )
            mlflow.log_artifacts(str(directory), f"{self.kind}_report")
            return str(run.info.run_id)

    def publish(self, out: Path, created: datetime, summary: dict[str, Any], page: str) -> ReportOutcome:
        """Save the report, then log it: what the caller gets back."""
        directory = self.save(out, created, summary, page)
        return ReportOutcome(summary, directory, self.log(directory))


def window_params(summary: dict[str, Any]) -> dict[str, str]:
    """The window asked for, as params; namespaced: `mlflow run` logs its own `since` and `until`."""
    return {
        "window.since": summary["window"]["since"] or "",
        "window.until": summary["window"]["until"] or "",
    }


def enough_rows(
    engine: Engine, *, model: str, version: int, since: datetime | None, until: datetime | None, least: int
) -> int:
    """How many answered rows the version has in the window; a clear error when fewer than `least`."""
    found = logged.count(engine, model_name=model, version=version, since=since, until=until)
    if found < least:
        raise MonitoringError(
            f"model {model!r} version {version} has {found} logged row(s) in the window; "
            f"a report needs at least {least} (--min-rows)"
        )
    return found


def window(span: drift.Span, since: datetime | None, until: datetime | None) -> dict[str, str | None]:
    """The logged times a report covers: as asked, and the first and last found."""
    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "first": pd.Timestamp(span.first).isoformat(),
        "last": pd.Timestamp(span.last).isoformat(),
    }


def finite(value: Any) -> Any:
    """The summary with NaN and infinities (an undefined statistic) as null, so it stays JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value
