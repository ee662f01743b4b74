"""Protected attributes: never a model input unless justified, measured as proxies, reweighed on request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.pyfunc import PyFuncModel
from mlflow.tracking import MlflowClient

from registry_scripts import fairness
from tests.conftest import REPO
from tests.training.test_explainable_model import predict
from training.__main__ import main
from training.config import load_config
from training.job import PROXIES_ARTIFACT, TrainingOutcome, train
from training.protected import proxies, reweighing

JUSTIFICATION = "Age bands are required by the lender's regulator for this product; reviewed 2026-11."


def credit_config(tmp_path: Path, **changes: Any) -> Path:
    """The shipped credit config with top-level fields replaced, written beside the test."""
    content = yaml.safe_load((REPO / "training" / "configs" / "credit.yaml").read_text())
    content["data"]["path"] = str(REPO / "data" / "credit.csv")
    content.update(changes)
    path = tmp_path / "credit.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def test_a_protected_input_stops_training_in_one_line_naming_it_and_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = yaml.safe_load((REPO / "training" / "configs" / "credit.yaml").read_text())
    path = credit_config(tmp_path, data={**shipped["data"], "path": str(REPO / "data" / "credit.csv"),
                                         "drop_columns": ["Marital"]})  # fmt: skip
    assert main(["--config", str(path), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: protected: 'Age' is a model input: add it to data.drop_columns, or justify its use in "
        "protected_inputs.Age\n"
    )


def test_a_misspelt_protected_attribute_stops_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(credit_config(tmp_path, protected=["Age", "Martial"]))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: protected: column(s) ['Martial'] not in the CSV (has [")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("justified", "said"),
    [
        ({"Income": JUSTIFICATION}, "protected_inputs: Income is not in `protected`"),
        ({"Age": "needed"}, "protected_inputs.Age: String should have at least 20 characters"),
    ],
)
def test_a_justification_names_a_protected_attribute_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], justified: dict[str, str], said: str
) -> None:
    assert main(["--config", str(credit_config(tmp_path, protected_inputs=justified))]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.integration
def test_a_justified_protected_input_is_trained_and_its_justification_is_in_the_card(
    tmp_path: Path, client: MlflowClient, caplog: pytest.LogCaptureFixture
) -> None:
    shipped = yaml.safe_load((REPO / "training" / "configs" / "credit.yaml").read_text())
    catalogue = {**shipped["reasons"]["catalogue"], "Age": {"code": "AGE", "statement": "Age"}}
    path = credit_config(
        tmp_path, model_name="credit-with-age", protected_inputs={"Age": JUSTIFICATION},
        data={**shipped["data"], "path": str(REPO / "data" / "credit.csv"), "drop_columns": ["Marital"]},
        reasons={**shipped["reasons"], "catalogue": catalogue},
        fairness={**shipped["fairness"], "mitigation": "reweigh"},  # The same run trains reweighed.
    )  # fmt: skip
    with caplog.at_level("INFO", logger="training.job"):
        outcome = train(load_config(str(path)), trials=1, cv_folds=2)
    assert "reweighing training rows by group" in caplog.text
    assert client.get_run(outcome.run_id).data.params["fairness.mitigation"] == "reweigh"
    signature = mlflow.pyfunc.load_model(f"models:/credit-with-age/{outcome.version}").metadata.signature
    required = {column.name for column in signature.inputs.inputs if column.required}
    optional = {column.name for column in signature.inputs.inputs if not column.required}
    assert "Age" in required and optional == {"client_id", "Marital"}
    card = mlflow.artifacts.load_text(f"runs:/{outcome.run_id}/model_card/model_card.md")
    assert "| used as inputs | Age |" in card and f"| why Age is an input | {JUSTIFICATION} |" in card
    assert "| accepted for monitoring only | Marital |" in card
    assert "| mitigation at training | reweigh |" in card
    assert "| proxies of Marital | all inputs together 0." in card  # Age itself is left out of its own.
    assert "proxies of Age" in card


@pytest.mark.parametrize("use_case", ["attrition", "credit"])
def test_the_shipped_configs_train_without_protected_inputs(
    request: pytest.FixtureRequest, client: MlflowClient, use_case: str
) -> None:
    outcome: TrainingOutcome = request.getfixturevalue(use_case)
    config = load_config(use_case)
    assert config.protected and not config.protected_inputs
    model = mlflow.pyfunc.load_model(f"models:/{use_case}/{outcome.version}")
    columns = {column.name: column for column in model.metadata.signature.inputs.inputs}
    for name in config.protected:
        assert not columns[name].required  # Accepted for fairness monitoring, not used.
    metadata = json.loads(
        Path(mlflow.artifacts.download_artifacts(f"runs:/{outcome.run_id}/model/artifacts/metadata.json"))
        .read_text()
    )  # fmt: skip
    assert not set(config.protected) & set(metadata["input_columns"])
    assert not set(config.protected) & set(metadata["reasons"])  # Never given as a reason either.
    found = mlflow.artifacts.load_dict(f"runs:/{outcome.run_id}/{PROXIES_ARTIFACT}")
    assert set(found["attributes"]) == set(config.protected)
    for item in found["attributes"].values():
        assert 0.4 < item["all_inputs"] <= 1.0 and not set(config.protected) & set(item["by_input"])
    card = mlflow.artifacts.load_text(f"runs:/{outcome.run_id}/model_card/model_card.md")
    assert f"| protected | {', '.join(config.protected)} |" in card and "| used as inputs | none |" in card
    assert client.get_run(outcome.run_id).data.params["fairness.mitigation"] == "none"


@pytest.mark.parametrize(
    ("model_fixture", "use_case", "changes"),
    [
        ("attrition_model", "attrition", {"Gender": "Female", "MaritalStatus": "Single", "Age": 22}),
        ("credit_model", "credit", {"Marital": "widow", "Age": 70}),
    ],
)
def test_what_a_client_sends_as_protected_attributes_never_moves_a_score(
    request: pytest.FixtureRequest, model_fixture: str, use_case: str, changes: dict[str, Any]
) -> None:
    model: PyFuncModel = request.getfixturevalue(model_fixture)
    target = load_config(use_case).data.target
    rows = pd.read_csv(REPO / "data" / f"{use_case}.csv").drop(columns=[target]).head(50)
    before, after = predict(model, rows), predict(model, rows.assign(**changes))
    assert before["score"].tolist() == after["score"].tolist()
    assert before["contributions"].tolist() == after["contributions"].tolist()


def test_reweighing_makes_the_outcome_independent_of_the_groups() -> None:
    rng = np.random.default_rng(0)
    groups = rng.choice(["a", "b", "c"], size=3000, p=[0.5, 0.3, 0.2])
    y = (rng.random(3000) < np.select([groups == "a", groups == "b"], [0.1, 0.3], 0.5)).astype(np.int64)
    policy = fairness.FairnessPolicy.model_validate({"attributes": {"g": {}}})
    weights = reweighing(pd.DataFrame({"g": groups}), y, policy)
    assert weights.mean() == pytest.approx(1.0)
    rates = [np.average(y[groups == g], weights=weights[groups == g]) for g in "abc"]
    assert rates == pytest.approx([y.mean()] * 3)  # Weighted, every group has the overall rate.
    assert (np.unique(weights.round(12)).size, weights.min() > 0) == (6, True)  # One weight per cell.


def test_proxies_name_the_input_that_stands_in_for_an_attribute() -> None:
    rng = np.random.default_rng(0)
    age = rng.integers(20, 65, size=1200)
    X = pd.DataFrame(
        {"years_worked": age - 20 + rng.integers(0, 3, size=1200), "noise": rng.random(1200),
         "colour": rng.choice(["red", "blue"], size=1200)}
    )  # fmt: skip
    policy = fairness.FairnessPolicy.model_validate({"attributes": {"Age": {"bands": [30, 40, 50]}}})
    found = proxies(
        X, pd.DataFrame({"Age": age}), numeric=["years_worked", "noise"], categorical=["colour"],
        policy=policy, seed=0,
    )  # fmt: skip
    item = found["attributes"]["Age"]
    assert next(iter(item["by_input"])) == "years_worked"  # Best first.
    assert item["by_input"]["years_worked"] > 0.95 and item["all_inputs"] > 0.95
    assert 0.4 < item["by_input"]["noise"] < 0.6 and 0.4 < item["by_input"]["colour"] < 0.6
    assert set(item["groups"]) == set(fairness.band_labels((30, 40, 50)))
