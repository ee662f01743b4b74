"""Reason codes: a catalogue per config, checked at training, and the model's top risk-raising features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel

from tests.conftest import REPO
from tests.training.test_explainable_model import predict
from training.__main__ import main
from training.config import load_config

RNG = np.random.default_rng(21)


def random_rows(use_case: str, n: int = 300) -> pd.DataFrame:
    """Rows no one sent: each column drawn on its own from the data, so features meet in new ways."""
    config = load_config(use_case)
    data = pd.read_csv(config.data.path).drop(columns=[config.data.target])
    return pd.DataFrame({name: RNG.choice(data[name].to_numpy(), n) for name in data.columns})


def config_file(tmp_path: Path, **reasons: object) -> Path:
    """The attrition config with its `reasons:` section changed."""
    content = yaml.safe_load((REPO / "training" / "configs" / "attrition.yaml").read_text())
    content["data"]["path"] = str(REPO / "data" / "attrition.csv")
    content["reasons"] = {**content["reasons"], **reasons}
    path = tmp_path / "attrition.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda c: {"exclude": [*c["exclude"], "Salary"]},
         "reasons.exclude: 'Salary' is not a model input (inputs: BusinessTravel, "),
        (lambda c: {"catalogue": {k: v for k, v in c["catalogue"].items() if k not in {"Department", "JobRole"}}},  # noqa: E501
         "reasons: no entry for model input(s) Department, JobRole: add each to reasons.catalogue or"),
        (lambda c: {"catalogue": {**c["catalogue"], "Department": {"code": "TRAVEL", "statement": "x"}}},
         ": reasons: code 'TRAVEL' is given to both BusinessTravel and Department"),
        (lambda c: {"exclude": ["OverTime"]}, ": reasons: OverTime is both in the catalogue and excluded"),
        (lambda c: {"catalogue": {**c["catalogue"], "JobRole": {"code": "role!", "statement": "x"}}},
         "reasons.catalogue.JobRole.code: String should match pattern"),
    ],
)  # fmt: skip
def test_a_bad_catalogue_stops_training_in_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: object, said: str
) -> None:
    shipped = yaml.safe_load((REPO / "training" / "configs" / "attrition.yaml").read_text())["reasons"]
    path = config_file(tmp_path, **change(shipped))  # type: ignore[operator]
    assert main(["--config", str(path), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("model_fixture", "use_case"), [("attrition_model", "attrition"), ("credit_model", "credit")]
)
def test_reasons_are_exactly_the_top_risk_raising_catalogued_contributions(
    request: pytest.FixtureRequest, model_fixture: str, use_case: str
) -> None:
    model: PyFuncModel = request.getfixturevalue(model_fixture)
    catalogue = load_config(use_case).reasons
    assert catalogue is not None
    rows = random_rows(use_case)
    answers = predict(model, rows, params={"reasons": 4})
    for (_, row), contributions, reasons in zip(
        rows.iterrows(), answers["contributions"], answers["reasons"], strict=True
    ):
        raising = sorted(
            (
                (value, name)
                for name, value in contributions.items()
                if value > 0 and name in catalogue.catalogue
            ),
            reverse=True,
        )
        assert [reason["feature"] for reason in reasons] == [name for _, name in raising[:4]]
        for reason in reasons:
            name = reason["feature"]
            entry = catalogue.catalogue[name]
            assert (reason["code"], reason["statement"]) == (entry.code, entry.statement)
            assert reason["contribution"] == contributions[name] > 0  # Never a risk-lowering feature.
            assert reason["value"] == (None if pd.isna(row[name]) else str(row[name]))
    assert not any(reason["feature"] in catalogue.exclude for found in answers["reasons"] for reason in found)
    fewer = predict(model, rows, params={"reasons": 1, "explain": False})
    assert "contributions" not in fewer and [r[:1] for r in answers["reasons"]] == list(fewer["reasons"])
    assert "reasons" not in predict(model, rows.head(3)).columns  # Off by default.


def test_the_reasons_param_is_checked(attrition_model: PyFuncModel) -> None:
    rows = random_rows("attrition", 2)
    with pytest.raises(MlflowException, match=r"params\.reasons must be an integer >= 0"):
        attrition_model.predict(rows, params={"reasons": -1})
    for bad in ("four", 2.5):  # MLflow checks the declared type first, and names the param too.
        with pytest.raises(MlflowException, match="reasons"):
            attrition_model.predict(rows, params={"reasons": bad})
