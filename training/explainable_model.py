"""The explainable pyfunc, logged as MLflow "models from code": it ships inside every model.

It imports nothing from this repository, so any process with the model's own requirements can
load it. Artifacts: the fitted scikit-learn pipeline, its SHAP TreeExplainer and a metadata file.
"""

from __future__ import annotations

import json
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel, PythonModelContext

OUTPUT_COLUMNS = ("score", "prediction", "threshold", "base_value", "contributions")


def _bad_input(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class ExplainableClassifier(PythonModel):
    """Scores rows and explains each score with per-feature SHAP values in log-odds."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the pipeline, explainer and metadata that training logged as artifacts."""
        with open(context.artifacts["metadata"], encoding="utf-8") as handle:
            meta = json.load(handle)
        pipeline = joblib.load(context.artifacts["pipeline"])
        self._preprocess = pipeline.named_steps["preprocess"]
        self._classifier = pipeline.named_steps["model"]
        self._explainer = joblib.load(context.artifacts["explainer"])
        self._inputs: list[str] = meta["input_columns"]
        self._raw_features: list[str] = meta["raw_features"]
        self._id_column: str = meta["id_column"]
        self._labels: tuple[str, str] = (meta["negative_label"], meta["positive_label"])
        self._default_threshold = float(meta["threshold"])
        self._base_value = float(np.ravel(self._explainer.expected_value)[0])
        owners = np.asarray(meta["encoded_to_raw"], dtype=np.int64)
        # Summing encoded columns back to raw features is one matrix product.
        self._aggregate = np.zeros((len(owners), len(self._raw_features)))
        self._aggregate[np.arange(len(owners)), owners] = 1.0

    def _options(self, params: dict[str, Any] | None) -> tuple[float, bool, int]:
        params = params or {}
        threshold = params.get("threshold", self._default_threshold)
        explain = params.get("explain", True)
        top_k = params.get("top_k", 0)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0.0 <= threshold <= 1.0
        ):
            raise _bad_input(f"params.threshold must be a number between 0 and 1, got {threshold!r}")
        if not isinstance(explain, bool | np.bool_):
            raise _bad_input(f"params.explain must be true or false, got {explain!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 0:
            raise _bad_input(f"params.top_k must be an integer >= 0 (0 = all), got {top_k!r}")
        return float(threshold), bool(explain), int(top_k)

    def _contributions(self, encoded: np.ndarray, top_k: int) -> list[dict[str, float]]:
        raw = np.asarray(self._explainer.shap_values(encoded), dtype=np.float64) @ self._aggregate
        names = self._raw_features
        if top_k == 0 or top_k >= len(names):
            return [dict(zip(names, row.tolist(), strict=True)) for row in raw]
        keep = np.argsort(-np.abs(raw), axis=1, kind="stable")[:, :top_k]
        return [{names[j]: float(row[j]) for j in idx} for row, idx in zip(raw, keep, strict=True)]

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """One row per input row: score, label, threshold, base value and contributions."""
        threshold, explain, top_k = self._options(params)
        missing = [c for c in self._inputs if c not in model_input.columns]
        if missing:
            raise _bad_input(f"missing required input column(s): {missing}")
        encoded = np.asarray(self._preprocess.transform(model_input[self._inputs]), dtype=np.float64)
        margin = np.asarray(self._classifier.predict(encoded, output_margin=True), dtype=np.float64)
        score = 1.0 / (1.0 + np.exp(-margin))
        output = pd.DataFrame(index=range(len(model_input)))
        if self._id_column in model_input.columns:
            output[self._id_column] = model_input[self._id_column].to_numpy()
        output["score"] = score
        output["prediction"] = np.where(score >= threshold, self._labels[1], self._labels[0])
        output["threshold"] = threshold
        output["base_value"] = self._base_value
        if explain:
            output["contributions"] = self._contributions(encoded, top_k)
        return output


mlflow.models.set_model(ExplainableClassifier())
