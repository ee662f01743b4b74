"""Training logs a complete record to MLflow and registers a tagged version, on both datasets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, subprocess_env
from training.config import load_config
from training.job import BaselineVerdict, TrainingOutcome, train

EXPECTED_PLOTS = {
    "roc_curve.png",
    "fairness.png",  # Both shipped configs name protected attributes.
    "precision_recall.png",
    "calibration.png",
    "shap_summary.png",
    "shap_importance.png",
}


@pytest.mark.parametrize("use_case", ["attrition", "credit"])
def test_run_logs_params_metrics_plots_and_lineage(
    request: pytest.FixtureRequest, client: MlflowClient, use_case: str
) -> None:
    outcome: TrainingOutcome = request.getfixturevalue(use_case)
    run = client.get_run(outcome.run_id)
    metrics = run.data.metrics
    for prefix in ("cv", "holdout", "baseline_cv", "baseline_holdout"):
        for name in ("roc_auc", "pr_auc", "brier", "f1", "business_cost"):
            assert f"{prefix}_{name}" in metrics
    assert 0.6 < metrics["holdout_roc_auc"] <= 1.0
    assert metrics["threshold"] == pytest.approx(outcome.threshold)
    params = run.data.params
    assert params["search.trials"] == "2" and params["search.cv_folds"] == "3"
    assert len(params["dataset_sha256"]) == 64 and "xgb_max_depth" in params
    assert run.data.tags["git_commit"]
    assert run.inputs is not None and run.inputs.dataset_inputs[0].dataset.name == use_case
    plots = {Path(a.path).name for a in client.list_artifacts(outcome.run_id, "plots")}
    assert plots == EXPECTED_PLOTS
    reference_dir = mlflow.artifacts.download_artifacts(run_id=outcome.run_id, artifact_path="reference")
    sample = pd.read_parquet(Path(reference_dir) / "train_sample.parquet")
    assert len(sample) > 100 and "score" in sample.columns
    shap_means = json.loads((Path(reference_dir) / "shap_mean_abs.json").read_text())
    assert set(shap_means) <= set(sample.columns)


def test_version_is_registered_and_tagged(client: MlflowClient, attrition: TrainingOutcome) -> None:
    version = client.get_model_version("attrition", attrition.version)
    assert version.run_id == attrition.run_id
    assert float(version.tags["holdout_roc_auc"]) == pytest.approx(
        attrition.metrics["holdout_roc_auc"], abs=1e-6
    )
    assert {"threshold", "dataset_sha256", "git_commit", "cv_roc_auc"} <= set(version.tags)
    # Stumps tried first: even the tiny test budget beats the logistic baseline.
    assert version.tags["beats_baseline"] == "true", version.tags["baseline_comparison"]
    assert "Holdout ROC AUC" in (version.description or "")


def test_a_third_dataset_needs_only_a_config_file(tmp_path: Path, client: MlflowClient) -> None:
    source = pd.read_csv(REPO / "data" / "credit.csv").sample(800, random_state=0)
    frame = source.rename(columns={"client_id": "applicant", "Status": "outcome"})
    frame["outcome"] = frame["outcome"].map({"bad": "defaulted", "good": "repaid"})
    frame.to_csv(tmp_path / "loans.csv", index=False)
    (tmp_path / "loans.yaml").write_text(
        yaml.safe_dump(
            {
                "model_name": "loans",
                "data": {
                    "path": "loans.csv",
                    "target": "outcome",
                    "positive_class": "defaulted",
                    "id_column": "applicant",
                    "drop_columns": ["Price"],
                    "categorical_columns": ["Time"],
                },
                "costs": {"false_negative": 4, "false_positive": 1},
                "search": {"trials": 1, "cv_folds": 2},
            }
        )
    )
    outcome = train(load_config(str(tmp_path / "loans.yaml")))
    assert client.get_model_version("loans", outcome.version).current_stage == "None"  # no stage yet
    model = mlflow.pyfunc.load_model(f"models:/loans/{outcome.version}")
    inputs = model.metadata.get_input_schema().input_names()
    assert "Price" not in inputs and "applicant" in inputs
    result = model.predict(frame.head(4).drop(columns=["outcome", "Price"]))
    assert set(result["prediction"]) <= {"defaulted", "repaid"}
    assert result["applicant"].tolist() == frame["applicant"].head(4).tolist()


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def test_cli_trains_against_a_postgresql_backend_store(postgres_url: str, tmp_path: Path) -> None:
    env = subprocess_env(MLFLOW_TRACKING_URI=postgres_url)
    done = _run(
        [sys.executable, "-m", "training", "--config", "credit", "--trials", "1", "--cv-folds", "2"],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trial 1/1" in done.stderr  # progress is visible
    assert "registered credit version 1" in done.stdout
    client = MlflowClient(tracking_uri=postgres_url, registry_uri=postgres_url)
    version = client.get_model_version("credit", "1")
    assert float(version.tags["holdout_roc_auc"]) > 0.6
    assert version.run_id is not None
    assert client.get_run(version.run_id).data.metrics["holdout_roc_auc"] > 0.6


@pytest.mark.integration
def test_mlproject_train_and_promote_entry_points(tmp_path: Path) -> None:
    env = subprocess_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    mlflow_cli = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local"]
    done = _run(
        [
            *mlflow_cli,
            "-e",
            "train",
            "-P",
            "config=credit",
            "-P",
            "trials=1",
            "-P",
            "cv_folds=2",
        ],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    done = _run([*mlflow_cli, "-e", "promote", "-P", "model=credit", "-P", "version=latest"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    production = client.get_model_version_by_alias("credit", "production")
    assert production.current_stage == "Production"
    # No --experiment-name: `mlflow run` made its run in Default; the training went to the model's experiment.
    assert production.run_id is not None
    training_run = client.get_run(production.run_id)
    assert client.get_experiment(training_run.info.experiment_id).name == "credit"
    launched = client.get_run(training_run.data.tags["launched_by_run"])
    assert launched.info.experiment_id == "0"
    assert training_run.info.run_id in launched.data.tags["mlflow.note.content"]


@pytest.mark.parametrize(
    ("model", "baseline", "beaten"), [(0.80, 0.81, True), (0.80, 0.8101, False), (0.85, 0.80, True)]
)
def test_the_baseline_verdict_allows_the_tolerance_and_no_more(
    model: float, baseline: float, beaten: bool
) -> None:
    verdict = BaselineVerdict(model, baseline, tolerance=0.01)
    assert verdict.beaten is beaten
    assert ("is worse than" in verdict.describe()) is not beaten
