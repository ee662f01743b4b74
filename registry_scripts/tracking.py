"""Where MLflow is: the one default tracking URI of every command, training to monitoring."""

from __future__ import annotations

import os

import mlflow

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def configure_mlflow() -> None:
    """The embedded store in the working directory unless MLFLOW_TRACKING_URI is set; no progress bars."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(DEFAULT_TRACKING_URI)
