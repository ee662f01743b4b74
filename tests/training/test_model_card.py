"""Every trained version has a model card whose figures are its run's."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from registry_scripts import fairness
from training.config import load_config
from training.job import TrainingOutcome


def card(run_id: str, kind: str) -> str:
    """One of the run's model card files."""
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"model_card/model_card.{kind}", dst_path=tmp
        )
        return Path(path).read_text(encoding="utf-8")


@pytest.mark.parametrize("use_case", ["attrition", "credit"])
def test_the_model_card_holds_the_runs_own_figures(
    request: pytest.FixtureRequest, client: MlflowClient, use_case: str
) -> None:
    outcome: TrainingOutcome = request.getfixturevalue(use_case)
    run = client.get_run(outcome.run_id).data
    version = client.get_model_version(outcome.model_name, outcome.version)
    assert version.tags["model_card"] == "model_card"
    text, page = card(outcome.run_id, "md"), card(outcome.run_id, "html")
    m, config = run.metrics, load_config(use_case)
    for figure in (
        f"# Model card: {use_case} version {outcome.version}",
        f"| CV ROC AUC | {m['cv_roc_auc']:.4f} (logistic baseline {m['baseline_cv_roc_auc']:.4f}) |",
        f"| holdout ROC AUC | {m['holdout_roc_auc']:.4f} (logistic baseline "
        f"{m['baseline_holdout_roc_auc']:.4f}) |",
        f"| threshold | {m['threshold']:.4f} |",
        f"| cost of a missed positive | {config.costs.false_negative:g} |",
        f"| SHA-256 | {run.params['dataset_sha256']} |",
        f"| rows | {int(run.params['dataset_rows']):,}: {int(run.params['train_rows']):,} training, "
        f"{int(run.params['holdout_rows']):,} holdout |",
        f"| training run | {outcome.run_id} |",
        f"within {m['shap_additivity_max_error']:.1e} on every holdout row",
        config.card.intended_use.split(";")[0],
    ):
        assert figure in text, figure
    assert m["shap_additivity_max_error"] < 1e-4
    assessed = fairness.recorded(outcome.run_id)
    assert assessed is not None and config.fairness is not None
    assert list(assessed["policy"]["attributes"]) == list(config.fairness.attributes)
    for item in assessed["attributes"]:
        ratio = m[f"fairness.{item['attribute']}.demographic_parity_ratio"]
        assert item["demographic_parity_ratio"] == pytest.approx(ratio)
        assert f"| {item['attribute']} | demographic-parity ratio {ratio:.3f}" in text
        line = text.split(f"| {item['attribute']} |")[1].split("\n")[0]
        assert ("UNDER" in line) == (ratio < config.fairness.min_ratio)
        for group in item["groups"]:
            assert f"| {item['attribute']} = {group['group']} | {group['rows']} rows" in text
    assert sum(group["rows"] for group in assessed["attributes"][0]["groups"]) == int(
        run.params["holdout_rows"]
    )
    assert "fairness.png" in {Path(a.path).name for a in client.list_artifacts(outcome.run_id, "plots")}
    assert "<h1>Model card: " in page and f"{m['holdout_roc_auc']:.4f}" in page and "http" not in page
    calibrated = float(run.params.get("xgb_scale_pos_weight", 1.0)) <= 1.0
    assert calibrated == ("not calibrated probabilities" not in text)
