"""What training stored with a model version, read through MLflow: reference sample, SHAP, costs."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from monitoring.errors import MonitoringError
from registry_scripts import access

HOLDOUT_METRICS = (
    "holdout_roc_auc",
    "holdout_brier",
    "holdout_business_cost_per_case",
    "holdout_positive_rate",
)


@dataclass(frozen=True)
class VersionFacts:
    """A version's labels, costs and holdout figures."""

    version: int
    run_id: str
    experiment_id: str
    labels: tuple[str, str]  # (negative, positive)
    costs: dict[str, float]
    holdout: dict[str, float]


@dataclass(frozen=True)
class Reference:
    """The training-time sample a version's logged traffic is compared with."""

    facts: VersionFacts
    features: pd.DataFrame
    scores: np.ndarray
    shap_mean_abs: dict[str, float]


def resolve_version(client: MlflowClient, name: str, version: int | None) -> int:
    """The version asked for, else the one @production names, else the newest."""
    try:
        return access.resolve(client, name, version=version, newest_without_alias=True)
    except access.LookupFailed as exc:
        where = f"--version: {name} version {version}" if version is not None else f"--model: {name}"
        raise MonitoringError(f"{where}: {exc.message}") from exc


def facts(client: MlflowClient, name: str, version: int) -> VersionFacts:
    """Labels, costs and holdout metrics of one version, from its model metadata and training run."""
    try:
        record = access.version_record(client, name, version)
    except access.LookupFailed as exc:
        raise MonitoringError(exc.message) from exc
    run, meta = record.run, record.metadata
    if run is None:
        raise MonitoringError(f"model {name!r} version {version} has no training run")
    params, metrics = run.data.params, run.data.metrics
    try:
        labels = (str(meta["negative_label"]), str(meta["positive_label"]))
        costs = {
            "false_negative": float(params["costs.false_negative"]),
            "false_positive": float(params["costs.false_positive"]),
        }
    except KeyError as exc:
        raise MonitoringError(
            f"model {name!r} version {version} was not trained by `python -m training` (no {exc.args[0]})"
        ) from exc
    holdout = {key: metrics[key] for key in HOLDOUT_METRICS if key in metrics}
    return VersionFacts(version, run.info.run_id, run.info.experiment_id, labels, costs, holdout)


def load(client: MlflowClient, name: str, version: int) -> Reference:
    """The reference sample, its scores and mean |SHAP| stored with a version's training run."""
    found = facts(client, name, version)
    run_id = found.run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = Path(
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reference", dst_path=tmp)
            )
            sample = pd.read_parquet(path / "train_sample.parquet")
            shap_mean_abs = json.loads((path / "shap_mean_abs.json").read_text(encoding="utf-8"))
        except (MlflowException, OSError) as exc:
            raise MonitoringError(
                f"model {name!r} version {version}: its run {run_id} has no reference sample ({exc})"
            ) from exc
    scores = sample.pop("score").to_numpy(dtype=float)
    return Reference(found, sample, scores, {str(k): float(v) for k, v in shap_mean_abs.items()})
