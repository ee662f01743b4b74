"""The latest drift summary of a model, as `python -m monitoring drift` logged it to MLflow."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry_scripts.access import LookupFailed, quoted
from serving.errors import NotFound, Unavailable


def latest_summary(client: MlflowClient, *, model: str, run_id: str) -> dict[str, Any]:
    """The newest drift run's summary of `model`, in the experiment of its training `run_id`."""
    try:
        name = quoted(model)
    except LookupFailed as exc:  # No report can carry a name MLflow's filters cannot quote.
        raise NotFound(f"no drift report of {model!r}") from exc
    try:
        runs = client.search_runs(
            [client.get_run(run_id).info.experiment_id],
            f"tags.monitoring = 'drift' and tags.model_name = {name}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            raise NotFound(f"no drift report of {model!r} yet (python -m monitoring drift)")
        run = runs[0]
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="drift_report/summary.json", dst_path=tmp
            )
            summary = json.loads(Path(path).read_text(encoding="utf-8"))
    except (MlflowException, OSError, ValueError) as exc:
        raise Unavailable(f"cannot read the latest drift report: {exc}") from exc
    return {"run_id": run.info.run_id, **summary}
