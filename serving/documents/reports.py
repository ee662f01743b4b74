"""A model's latest report summaries, as `python -m monitoring drift` and `compare` logged them."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry_scripts.access import LookupFailed, quoted
from serving.errors import NotFound, Unavailable


def latest_summary(
    client: MlflowClient, *, model: str, run_id: str, kind: Literal["drift", "compare"]
) -> dict[str, Any]:
    """The newest `kind` run's summary of `model`, in the experiment of its training `run_id`."""
    try:
        name = quoted(model)
    except LookupFailed as exc:  # No report can carry a name MLflow's filters cannot quote.
        raise NotFound(f"no {kind} report of {model!r}") from exc
    try:
        runs = client.search_runs(
            [client.get_run(run_id).info.experiment_id],
            f"tags.monitoring = '{kind}' and tags.model_name = {name}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            raise NotFound(f"no {kind} report of {model!r} yet (python -m monitoring {kind})")
        run = runs[0]
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path=f"{kind}_report/summary.json", dst_path=tmp
            )
            summary = json.loads(Path(path).read_text(encoding="utf-8"))
    except (MlflowException, OSError, ValueError) as exc:
        raise Unavailable(f"cannot read the latest {kind} report: {exc}") from exc
    return {"run_id": run.info.run_id, **summary}
