"""MLflow's floor: a pyfunc that answers a constant, so a request costs only MLflow's own work."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext


class Constant(PythonModel):
    """One score of 0.5 per row, whatever the row."""

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> list[float]:
        """0.5 for every row."""
        return [0.5] * len(model_input)


mlflow.models.set_model(Constant())
