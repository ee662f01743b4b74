"""The dataset is checked against its config before any training starts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import config_with
from training.data import load_dataset
from training.errors import DataError


def test_attrition_schema_matches_the_csv() -> None:
    dataset = load_dataset(config_with("attrition"))
    types = {f.name: f.type for f in dataset.schema}
    assert len(types) == 27 and "Attrition" not in types and "employee_id" not in types
    assert types["TotalWorkingYears"] == "long" and types["OverTime"] == "string"
    # Protected attributes are not inputs: kept for the fairness figures, and accepted for monitoring.
    assert not {"Age", "Gender", "MaritalStatus"} & set(types)
    assert {f.name: f.type for f in dataset.monitored} == {
        "Gender": "string",
        "MaritalStatus": "string",
        "Age": "long",
    }
    assert dataset.positive_label == "Yes" and dataset.negative_label == "No"
    assert dataset.target.sum() == 237
    assert len(dataset.sha256) == 64


def test_credit_keeps_missing_values_and_float_columns() -> None:
    dataset = load_dataset(config_with("credit"))
    types = {f.name: f.type for f in dataset.schema}
    assert types["Income"] == "double" and types["Home"] == "string"
    assert dataset.features["Income"].isna().sum() > 0


def _with_data(tmp_path: Path, frame: pd.DataFrame, **data: object) -> object:
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    base = config_with("attrition")
    update = {"path": path, "drop_columns": (), **data}
    # The small frames hold none of the shipped config's protected columns.
    return base.model_copy(update={"data": base.data.model_copy(update=update), "protected": ()})


@pytest.mark.parametrize(
    ("frame", "data", "message"),
    [
        (
            pd.DataFrame({"id": [1, 2], "x": [1, 2]}),
            {"target": "y", "id_column": "id"},
            r"data\.target: column\(s\) \['y'\]",
        ),
        (
            pd.DataFrame({"id": [1, 1], "x": [1, 2], "y": ["a", "b"]}),
            {"target": "y", "id_column": "id", "positive_class": "a"},
            "data.id_column",
        ),
        (
            pd.DataFrame({"id": [1, 2, 3], "x": [1, 2, 3], "y": ["a", "b", "c"]}),
            {"target": "y", "id_column": "id", "positive_class": "a"},
            "exactly 2 classes",
        ),
        (
            pd.DataFrame({"id": [1, 2], "x": [1, 2], "y": ["a", "b"]}),
            {"target": "y", "id_column": "id", "positive_class": "a"},
            "too few",
        ),
        (
            pd.DataFrame({"id": [1, 2], "y": ["a", "b"]}),
            {"target": "y", "id_column": "id", "positive_class": "a", "drop_columns": ("zz",)},
            "data.drop_columns",
        ),
    ],
)
def test_mismatches_are_named(
    tmp_path: Path, frame: pd.DataFrame, data: dict[str, object], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset(_with_data(tmp_path, frame, **data))  # type: ignore[arg-type]
