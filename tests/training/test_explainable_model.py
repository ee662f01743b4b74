"""The pyfunc's contract: signature, params, output, exact additivity, robustness, behaviour."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest
import shap
import xgboost as xgb
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel, scoring_server

from bench.logfill import served_json as as_served
from tests.conftest import REPO
from training.explainable_model import SERVING_ENVIRONMENT
from training.features import encoded_to_raw
from training.job import TrainingOutcome
from training.search import FIRST_TRIAL

ATTRITION = pd.read_csv(REPO / "data" / "attrition.csv")
CREDIT = pd.read_csv(REPO / "data" / "credit.csv")


def inputs(frame: pd.DataFrame, target: str, n: int = 50) -> pd.DataFrame:
    return frame.drop(columns=[target]).head(n).reset_index(drop=True)


def predict(model: PyFuncModel, rows: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
    result = model.predict(rows, params=params)
    assert isinstance(result, pd.DataFrame)
    return result


PROTECTED = {"Age", "Gender", "MaritalStatus", "Marital"}  # The shipped configs' `protected:`.


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def test_signature_has_typed_columns_optional_id_and_params(
    attrition_model: PyFuncModel, attrition: TrainingOutcome
) -> None:
    signature = attrition_model.metadata.signature
    columns = {c.name: c for c in signature.inputs.inputs}
    assert len(columns) == 31  # 27 inputs, the optional id and the 3 protected attributes.
    assert columns["TotalWorkingYears"].type.name == "long" and columns["OverTime"].type.name == "string"
    assert columns["TotalWorkingYears"].required and not columns["employee_id"].required
    # Protected attributes are accepted (for fairness monitoring), never required, never used.
    assert columns["Age"].type.name == "long"
    assert not any(columns[name].required for name in ("Age", "Gender", "MaritalStatus"))
    params = {p.name: p for p in signature.params.params}
    assert params["threshold"].default == pytest.approx(attrition.threshold)
    assert params["explain"].default is True and params["top_k"].default == 0
    assert attrition_model.input_example is not None


@pytest.mark.parametrize(
    ("model_fixture", "frame", "target"),
    [("attrition_model", ATTRITION, "Attrition"), ("credit_model", CREDIT, "Status")],
)
def test_output_and_additivity(
    request: pytest.FixtureRequest, model_fixture: str, frame: pd.DataFrame, target: str
) -> None:
    model: PyFuncModel = request.getfixturevalue(model_fixture)
    rows = inputs(frame, target, 200)
    result = predict(model, rows)
    id_column = rows.columns[0]
    assert list(result.columns) == [
        id_column,
        "score",
        "prediction",
        "threshold",
        "base_value",
        "unseen_categories",
        "contributions",
    ]
    assert result[id_column].tolist() == rows[id_column].tolist()
    assert result["score"].between(0, 1, inclusive="neither").all()
    totals = result["base_value"] + result["contributions"].map(lambda c: sum(c.values()))
    np.testing.assert_allclose(totals, logit(result["score"].to_numpy()), atol=1e-4)
    required = {c.name for c in model.metadata.signature.inputs.inputs if c.required}
    assert set(result["contributions"][0]) == required == set(rows.columns) - {id_column} - PROTECTED
    given = [*result["base_value"], *(v for c in result["contributions"] for v in c.values())]
    assert all(round(value, 8) == value for value in given)  # 8 decimals, not float32's 17 digits.
    positive = frame[target].unique()
    assert set(result["prediction"]) <= set(positive)


@pytest.mark.parametrize(
    ("outcome_fixture", "model_fixture", "frame", "target"),
    [("attrition", "attrition_model", ATTRITION, "Attrition"), ("credit", "credit_model", CREDIT, "Status")],
)
def test_contributions_equal_the_shipped_tree_explainer(
    request: pytest.FixtureRequest, outcome_fixture: str, model_fixture: str, frame: pd.DataFrame, target: str
) -> None:
    """The fast path (lookup encoding + XGBoost TreeSHAP) equals pipeline + shap.TreeExplainer."""
    outcome: TrainingOutcome = request.getfixturevalue(outcome_fixture)
    model: PyFuncModel = request.getfixturevalue(model_fixture)
    artifacts = Path(mlflow.artifacts.download_artifacts(f"models:/{outcome.model_name}/{outcome.version}"))
    pipeline = joblib.load(artifacts / "artifacts" / "pipeline.joblib")
    explainer = joblib.load(artifacts / "artifacts" / "explainer.joblib")
    assert isinstance(explainer, shap.TreeExplainer)
    rows = inputs(frame, target, 300)
    features = rows.drop(columns=[rows.columns[0]])
    text = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    numbers = [c for c in features.columns if pd.api.types.is_float_dtype(features[c])]
    rows.loc[0, text[0]] = "never seen in training"
    rows.loc[1, text[0]] = None
    rows.loc[2, text[-1]] = np.nan
    if numbers:
        rows.loc[3, numbers[0]] = np.nan
    preprocess = pipeline.named_steps["preprocess"]
    numeric, categorical = (list(columns) for _, _, columns in preprocess.transformers_[:2])
    owners = encoded_to_raw(preprocess, numeric, categorical)
    encoded = preprocess.transform(rows.drop(columns=[rows.columns[0]]))
    np.testing.assert_array_equal(model.unwrap_python_model()._encode(rows)[0], encoded)
    reference = np.asarray(explainer.shap_values(encoded))
    expected = np.column_stack([reference[:, owners == j].sum(axis=1) for j in range(owners.max() + 1)])
    result = predict(model, rows)
    got = np.array([[c[name] for name in numeric + categorical] for c in result["contributions"]])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(result["base_value"], np.ravel(explainer.expected_value)[0], atol=1e-4)
    probability = pipeline.predict_proba(rows.drop(columns=[rows.columns[0]]))[:, 1]
    np.testing.assert_allclose(result["score"], probability, atol=1e-6)


@pytest.mark.parametrize(("frame", "target"), [(ATTRITION, "Attrition"), (CREDIT, "Status")])
def test_saabas_equals_treeshap_on_stumps_only(frame: pd.DataFrame, target: str) -> None:
    """`approx_contribs` is exact on boosted stumps (the search's first trial), and not on deeper trees."""
    features = pd.get_dummies(frame.drop(columns=[frame.columns[0], target]), dtype=float).to_numpy()
    labels = (frame[target] == frame[target].value_counts().index[-1]).to_numpy()
    gaps = {}
    for depth in (1, 3):
        model = xgb.XGBClassifier(**{**FIRST_TRIAL, "max_depth": depth}, random_state=0).fit(features, labels)
        rows = xgb.DMatrix(features)
        exact = model.get_booster().predict(rows, pred_contribs=True)
        approx = model.get_booster().predict(rows, pred_contribs=True, approx_contribs=True)
        gaps[depth] = float(np.abs(exact - approx).max())
    assert gaps[1] < 1e-5 and gaps[3] > 1e-2, gaps  # Float32 rounding only, on every row and feature.


def test_the_model_uses_saabas_only_on_stumps(attrition_model: PyFuncModel) -> None:
    python_model = attrition_model.unwrap_python_model()
    depths = python_model._booster.trees_to_dataframe().groupby("Tree")["Node"].count()
    assert python_model._stumps == bool((depths <= 3).all())  # A stump: one split, two leaves.


def test_params_threshold_explain_and_top_k(attrition_model: PyFuncModel) -> None:
    rows = inputs(ATTRITION, "Attrition", 30)
    everyone = predict(attrition_model, rows, params={"threshold": 0.0})
    assert (everyone["prediction"] == "Yes").all() and (everyone["threshold"] == 0.0).all()
    nobody = predict(attrition_model, rows, params={"threshold": 1.0})
    assert (nobody["prediction"] == "No").all()
    plain = predict(attrition_model, rows, params={"explain": False})
    assert "contributions" not in plain.columns
    np.testing.assert_allclose(plain["score"], everyone["score"])
    full = predict(attrition_model, rows)
    top = predict(attrition_model, rows, params={"top_k": 3})
    for all_c, top_c in zip(full["contributions"], top["contributions"], strict=True):
        assert len(top_c) == 3
        strongest = sorted(all_c, key=lambda k: -abs(all_c[k]))[:3]
        assert set(top_c) == set(strongest)


@pytest.mark.parametrize("params", [None, {"top_k": 3, "threshold": 0.9}, {"explain": False}])
def test_served_the_model_answers_its_frame_as_records(
    attrition_model: PyFuncModel, monkeypatch: pytest.MonkeyPatch, params: dict[str, Any] | None
) -> None:
    rows = inputs(ATTRITION, "Attrition", 20)
    rows.loc[3, "JobRole"] = "Unseen_Role"
    frame = predict(attrition_model, rows, params)
    empty = predict(attrition_model, rows.head(0), params)
    assert empty.empty and list(empty.columns) == list(frame.columns)
    monkeypatch.setenv(SERVING_ENVIRONMENT, "true")
    served = attrition_model.predict(rows, params=params)
    assert isinstance(served, list)
    assert served == frame.to_dict(orient="records")
    assert as_served(served) == as_served(frame)
    assert attrition_model.predict(rows.head(0), params=params) == []


def test_mlflow_scoring_server_says_it_serves_as_the_model_expects(
    attrition_model: PyFuncModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SERVING_ENVIRONMENT, "false")  # Undone after the test, whatever `init` sets.
    scoring_server.init(attrition_model)
    assert os.environ.get(SERVING_ENVIRONMENT) == "true"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"top_k": -1}, "top_k"),
        ({"threshold": "high"}, "threshold"),
    ],
)
def test_bad_params_are_rejected_by_name(
    attrition_model: PyFuncModel, params: dict[str, object], field: str
) -> None:
    with pytest.raises(MlflowException, match=field):
        predict(attrition_model, inputs(ATTRITION, "Attrition", 2), params=params)


def test_unseen_categories_and_missing_values_still_score(
    attrition_model: PyFuncModel, credit_model: PyFuncModel
) -> None:
    rows = inputs(ATTRITION, "Attrition", 3)
    rows.loc[0, "JobRole"] = "Astronaut"
    rows.loc[1, "OverTime"] = None
    result = predict(attrition_model, rows)
    assert result["score"].between(0, 1, inclusive="neither").all()
    assert result["unseen_categories"].tolist() == [["JobRole"], [], []]  # Missing is not unseen.
    credit_rows = inputs(CREDIT, "Status", 3)
    credit_rows.loc[0, ["Income", "Assets"]] = np.nan
    credit_rows.loc[1, "Home"] = None
    credit_rows.loc[2, "Job"] = "astronaut"
    scored = predict(credit_model, credit_rows)
    assert scored["unseen_categories"].tolist() == [[], [], ["Job"]]
    totals = scored["base_value"] + scored["contributions"].map(lambda c: sum(c.values()))
    np.testing.assert_allclose(totals, logit(scored["score"].to_numpy()), atol=1e-4)


def test_missing_column_and_wrong_type_are_named(attrition_model: PyFuncModel) -> None:
    rows = inputs(ATTRITION, "Attrition", 2)
    with pytest.raises(MlflowException, match="MonthlyIncome"):
        predict(attrition_model, rows.drop(columns=["MonthlyIncome"]))
    with pytest.raises(MlflowException, match="column Age"):
        predict(attrition_model, rows.assign(Age=["old", "young"]))


def test_scores_do_not_depend_on_id_batch_or_order(attrition_model: PyFuncModel) -> None:
    rows = inputs(ATTRITION, "Attrition", 40)
    batch = predict(attrition_model, rows)["score"].to_numpy()
    renamed = predict(attrition_model, rows.assign(employee_id=rows["employee_id"] + 100000))[
        "score"
    ].to_numpy()
    without_id = predict(attrition_model, rows.drop(columns=["employee_id"]))["score"].to_numpy()
    reversed_ = predict(attrition_model, rows.iloc[::-1].reset_index(drop=True))["score"].to_numpy()[::-1]
    single = np.array([predict(attrition_model, rows.iloc[[i]])["score"][0] for i in range(5)])
    np.testing.assert_allclose(renamed, batch)
    np.testing.assert_allclose(without_id, batch)
    np.testing.assert_allclose(reversed_, batch)
    np.testing.assert_allclose(single, batch[:5])


def test_more_overtime_does_not_lower_attrition_risk_in_expectation(attrition_model: PyFuncModel) -> None:
    rows = ATTRITION.drop(columns=["Attrition"])
    with_overtime = predict(attrition_model, rows.assign(OverTime="Yes"), params={"explain": False})["score"]
    without = predict(attrition_model, rows.assign(OverTime="No"), params={"explain": False})["score"]
    assert with_overtime.mean() >= without.mean()


def test_higher_income_does_not_raise_credit_risk_in_expectation(credit_model: PyFuncModel) -> None:
    rows = CREDIT.drop(columns=["Status"]).dropna(subset=["Income"])
    richer = predict(credit_model, rows.assign(Income=rows["Income"] * 2.0), params={"explain": False})[
        "score"
    ]
    base = predict(credit_model, rows, params={"explain": False})["score"]
    assert richer.mean() <= base.mean()
