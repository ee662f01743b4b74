"""One way to reach MLflow for every command: tracking URI, filter quoting, which version a name means.

Training, promotion, serving and monitoring all resolve `@alias`, `/Stage`, a number or the newest
version here, so they agree on what `models:/attrition@production` is today.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


class LookupFailed(Exception):
    """The registry does not know what was asked for; each command words it for its own options."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def configure_mlflow() -> None:
    """The embedded store in the working directory unless MLFLOW_TRACKING_URI is set; no progress bars."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(DEFAULT_TRACKING_URI)


def quoted(value: str) -> str:
    """A string literal for MLflow's search filters (which take no escapes: `\\'` matches nothing)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise LookupFailed(f"{value!r} holds both quote marks; MLflow's search filters cannot name it")


def model_uri(name: str, *, alias: str | None = None, stage: str | None = None) -> str:
    """`models:/name/Stage` or `models:/name@alias` (production unless said otherwise)."""
    return f"models:/{name}/{stage}" if stage else f"models:/{name}@{alias or 'production'}"


@dataclass(frozen=True)
class VersionRecord:
    """What MLflow holds of one version: its registry entry, its training run, its logged model."""

    model_version: ModelVersion
    run: Run | None
    model: ModelInfo

    @property
    def metadata(self) -> dict[str, Any]:
        """The model's metadata (threshold, labels, target, feature facts), empty if it has none."""
        return dict(self.model.metadata or {})


def version_record(client: MlflowClient, name: str, version: int) -> VersionRecord:
    """The registry entry, run and logged model of one version; `LookupFailed` naming it otherwise."""
    try:
        model_version = client.get_model_version(name, str(version))
        run = client.get_run(model_version.run_id) if model_version.run_id else None
        model = mlflow.models.get_model_info(f"models:/{name}/{version}")
    except MlflowException as exc:
        raise LookupFailed(f"model {name!r} version {version}: {exc.message}") from exc
    return VersionRecord(model_version, run, model)


def all_versions(client: MlflowClient, name: str) -> list[int]:
    """The numbers of every version of a model, oldest first."""
    found = client.search_model_versions(f"name = {quoted(name)}")
    return sorted(int(version.version) for version in found)


def resolve(
    client: MlflowClient,
    name: str,
    *,
    alias: str | None = None,
    stage: str | None = None,
    version: int | None = None,
    newest_without_alias: bool = False,
) -> int:
    """The version a number, a stage or an alias (production by default) names now.

    `newest_without_alias`: a model without the alias gets its newest version instead of an error.
    """
    try:
        if version is not None:
            return int(client.get_model_version(name, str(version)).version)
        if stage:
            held = [
                int(found.version)
                for found in client.search_model_versions(f"name = {quoted(name)}")
                if found.current_stage == stage
            ]
            if not held:
                raise LookupFailed(f"no version of model {name!r} is in stage {stage}")
            return max(held)
        try:
            return int(client.get_model_version_by_alias(name, alias or "production").version)
        except MlflowException:
            if not newest_without_alias:
                raise
            numbers = all_versions(client, name)
            if not numbers:
                raise LookupFailed(f"no registered model {name!r} has a version") from None
            return numbers[-1]
    except MlflowException as exc:
        raise LookupFailed(exc.message) from exc
