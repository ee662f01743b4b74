"""The usual way, for comparison: ColumnTransformer per request, shap.TreeExplainer, a dict per row."""

from __future__ import annotations

import json
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext


class SeedStyle(PythonModel):
    """Scores and explains with the same fitted pipeline and explainer as ours, the common way."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the pipeline, the explainer and the metadata."""
        with open(context.artifacts["metadata"], encoding="utf-8") as handle:
            meta = json.load(handle)
        pipeline = joblib.load(context.artifacts["pipeline"])
        self.preprocess = pipeline.named_steps["preprocess"]
        self.model = pipeline.named_steps["model"]
        self.explainer = joblib.load(context.artifacts["explainer"])
        self.columns: list[str] = meta["input_columns"]
        self.threshold = float(meta["threshold"])
        self.labels = (meta["negative_label"], meta["positive_label"])
        raw = meta["raw_features"]
        self.owner = [raw[i] for i in meta["encoded_to_raw"]]

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Score, label, threshold, base value and per-feature contributions, row by row."""
        threshold = float((params or {}).get("threshold", self.threshold))
        encoded = self.preprocess.transform(model_input[self.columns])
        scores = self.model.predict_proba(encoded)[:, 1]
        shap_values = self.explainer.shap_values(encoded)
        base_value = float(np.ravel(self.explainer.expected_value)[0])
        results = []
        for i in range(len(encoded)):
            contributions: dict[str, float] = {}
            for j, feature in enumerate(self.owner):
                contributions[feature] = contributions.get(feature, 0.0) + float(shap_values[i][j])
            results.append(
                {
                    "score": float(scores[i]),
                    "prediction": self.labels[int(scores[i] >= threshold)],
                    "threshold": threshold,
                    "base_value": base_value,
                    "contributions": contributions,
                }
            )
        return pd.DataFrame(results)


mlflow.models.set_model(SeedStyle())
