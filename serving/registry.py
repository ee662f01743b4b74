"""What the serving command knows of a model: the registry's answer, read through MLflow's client."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from mlflow.tracking import MlflowClient

from registry_scripts import access
from serving.errors import ConfigurationError

REPORTED_METRICS = ("threshold", "cv_roc_auc")


@dataclass(frozen=True)
class ModelInfo:
    """One registered version as `GET /model` reports it."""

    name: str
    version: int
    target: str
    stage: str | None
    aliases: list[str]
    run_id: str | None
    threshold: float | None
    metrics: dict[str, float]
    inputs: list[dict[str, Any]]
    params: list[dict[str, Any]]
    labels: tuple[str, str] | None = None  # (negative, positive) as the dataset words them.
    features: dict[str, Any] | None = None  # Training ranges and categories, for forms.
    use_case: dict[str, Any] | None = None  # The model's own words: target and use case name.

    @cached_property
    def columns(self) -> list[str]:
        """The input column names, the id column included."""
        return [column["name"] for column in self.inputs if "name" in column]

    @cached_property
    def id_column(self) -> str | None:
        """The signature's optional input column, which the model echoes back as the id."""
        optional = [c["name"] for c in self.inputs if c.get("required") is False and "name" in c]
        return optional[0] if optional else None

    def as_json(self) -> dict[str, Any]:
        """The body of `GET /model`."""
        return {
            "name": self.name,
            "version": self.version,
            "served_as": f"models:/{self.name}{self.target}",
            "stage": self.stage,
            "aliases": self.aliases,
            "run_id": self.run_id,
            "threshold": self.threshold,
            "metrics": self.metrics,
            "id_column": self.id_column,
            "input_schema": self.inputs,
            "params": self.params,
            "labels": None
            if self.labels is None
            else {"negative": self.labels[0], "positive": self.labels[1]},
            "features": self.features,
            "use_case": self.use_case,
        }


def resolve(client: MlflowClient, name: str, *, alias: str | None, stage: str | None) -> int:
    """The version an alias or a stage names now."""
    try:
        return access.resolve(client, name, alias=alias, stage=stage)
    except access.LookupFailed as exc:
        where = f"--stage: {name}/{stage}" if stage else f"--model/--alias: {name}@{alias}"
        raise ConfigurationError(f"{where}: {exc.message}") from exc


def describe(client: MlflowClient, name: str, version: int, target: str) -> ModelInfo:
    """Registry, run and signature facts about one version."""
    try:
        record = access.version_record(client, name, version)
    except access.LookupFailed as exc:
        raise ConfigurationError(exc.message) from exc
    model_version, meta, signature = record.model_version, record.metadata, record.model.signature
    run_metrics = record.run.data.metrics if record.run else {}
    inputs = signature.inputs.to_dict() if signature and signature.inputs else []
    params = signature.params.to_dict() if signature and signature.params else []
    metrics = {
        key: value
        for key, value in run_metrics.items()
        if key.startswith("holdout_") or key in REPORTED_METRICS
    }
    return ModelInfo(
        name=name,
        version=version,
        target=target,
        stage=model_version.current_stage if model_version.current_stage != "None" else None,
        aliases=sorted(model_version.aliases or []),
        run_id=model_version.run_id,
        threshold=run_metrics.get("threshold"),
        metrics=metrics,
        inputs=inputs,
        params=params,
        labels=(str(meta["negative_label"]), str(meta["positive_label"]))
        if "negative_label" in meta and "positive_label" in meta
        else None,
        features=meta.get("features"),
        use_case={"name": meta.get("use_case"), "target": meta.get("target")} if meta else None,
    )


def restore_id(features: dict[str, Any], entity_id: str, info: ModelInfo) -> dict[str, Any]:
    """A pseudonymised entity's features with the requested id back in its column, typed as signed."""
    assert info.id_column is not None
    kind = next(column["type"] for column in info.inputs if column.get("name") == info.id_column)
    value: object = int(entity_id) if kind in ("long", "integer") else entity_id
    return {**features, info.id_column: value}
