"""The training job: search, threshold, evaluation, MLflow logging and registration."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
import shap
from mlflow.data.pandas_dataset import from_pandas
from mlflow.environment_variables import MLFLOW_RUN_ID
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Array, ColSpec, DataType, Map, ParamSchema, ParamSpec, Schema, TensorSpec
from pydantic import ValidationError
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

from registry_scripts import fairness
from training import model_card, plots, protected
from training.config import SearchConfig, UseCaseConfig, format_validation_error
from training.data import Dataset, load_dataset
from training.errors import ConfigError
from training.evaluation import choose_threshold, classification_metrics
from training.features import encoded_to_raw
from training.search import SearchResult, baseline_pipeline, folds, oof_scores, tune, weighted, xgb_pipeline

log = logging.getLogger(__name__)

MODEL_CODE = Path(__file__).with_name("explainable_model.py")
MODEL_REQUIREMENTS = ("mlflow", "xgboost", "shap", "scikit-learn", "pandas", "numpy", "joblib")
REFERENCE_ROWS = 1000
CARD_DIR = "model_card"  # In the training run: model_card.md and model_card.html.
PROXIES_ARTIFACT = "fairness/proxies.json"  # How well the inputs predict each protected attribute.
DEFAULT_EXPERIMENT_ID = "0"  # Where `mlflow run` puts a run when not told an experiment.
# Key metrics copied onto the model version, where the registry UI and the gates read them.
VERSION_TAG_METRICS = (
    "holdout_roc_auc",
    "holdout_pr_auc",
    "holdout_brier",
    "holdout_business_cost_per_case",
    "cv_roc_auc",
)


@contextmanager
def _quiet_mlflow_hints() -> Iterator[None]:
    """Silence two MLflow hints that do not apply: ints are typed long on purpose (documented)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*Integer columns in Python cannot represent missing values.*"
        )
        warnings.filterwarnings("ignore", message=".*dataset source can be interpreted in multiple ways.*")
        yield


@dataclass(frozen=True)
class TrainingOutcome:
    """What a training run produced."""

    run_id: str
    model_name: str
    version: str
    threshold: float
    metrics: dict[str, float]
    baseline: BaselineVerdict


@dataclass(frozen=True)
class BaselineVerdict:
    """Whether the model's CV ROC AUC holds up against its logistic baseline's, within the tolerance."""

    cv_roc_auc: float
    baseline_cv_roc_auc: float
    tolerance: float

    @property
    def beaten(self) -> bool:
        """Not below the baseline by more than the tolerance."""
        return self.cv_roc_auc >= self.baseline_cv_roc_auc - self.tolerance

    def describe(self) -> str:
        """One line with both figures."""
        relation = "holds up against" if self.beaten else "is worse than"
        return (
            f"CV ROC AUC {self.cv_roc_auc:.4f} {relation} the logistic baseline's "
            f"{self.baseline_cv_roc_auc:.4f} (tolerance {self.tolerance})"
        )


def git_commit() -> str:
    """Commit of the code that trains, or 'unknown' outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip()


def _signature(dataset: Dataset, id_type: str, threshold: float) -> ModelSignature:
    columns: list[ColSpec | TensorSpec] = [ColSpec(feature.type, feature.name) for feature in dataset.schema]
    columns.append(ColSpec(id_type, dataset.ids.name, required=False))
    # Accepted and logged, never used by the model: what `monitoring fairness` groups live decisions by.
    columns += [ColSpec(feature.type, feature.name, required=False) for feature in dataset.monitored]
    params = ParamSchema(
        [
            ParamSpec("threshold", "double", threshold),
            ParamSpec("explain", "boolean", True),
            ParamSpec("top_k", "long", 0),
            ParamSpec("reasons", "long", 0),
        ]
    )
    return ModelSignature(inputs=Schema(columns), outputs=_output_schema(dataset, id_type), params=params)


def _output_schema(dataset: Dataset, id_type: str) -> Schema:
    """What the pyfunc answers per row; `spark_udf` builds its result struct from it."""
    return Schema(
        [
            ColSpec(id_type, dataset.ids.name, required=False),  # Echoed when sent.
            ColSpec(DataType.double, "score"),
            ColSpec(DataType.string, "prediction"),
            ColSpec(DataType.double, "threshold"),
            ColSpec(DataType.double, "base_value"),
            ColSpec(Array(DataType.string), "unseen_categories"),
            ColSpec(Map(DataType.double), "contributions", required=False),  # Absent when explain=false.
            # Not `reasons` (params.reasons > 0): `spark_udf`'s default result type, built from this
            # schema, would then fail on every call that did not ask for them.
        ]
    )


def _feature_facts(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    """What a form needs to ask for each feature: the training range, or the categories."""
    facts: dict[str, Any] = {}
    for name in numeric:
        values = frame[name].dropna()
        low, median, high = (float(v) for v in values.quantile([0.0, 0.5, 1.0]))
        facts[name] = {"kind": "numeric", "min": low, "median": median, "max": high}
    for name in categorical:
        counts = frame[name].dropna().value_counts()
        facts[name] = {
            "kind": "categorical",
            "categories": sorted(value.item() if hasattr(value, "item") else value for value in counts.index),
            "most_common": counts.index[0].item() if hasattr(counts.index[0], "item") else counts.index[0],
        }
    return facts


def _requirements() -> list[str]:
    return [f"{name}=={installed_version(name)}" for name in MODEL_REQUIREMENTS]


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{key}": value for key, value in metrics.items()}


def _log_figures(
    y_hold: np.ndarray,
    scores: dict[str, np.ndarray],
    *,
    raw: np.ndarray,
    names: list[str],
    shap_values: np.ndarray,
    encoded: pd.DataFrame,
) -> None:
    mlflow.log_figure(plots.roc_curve(y_hold, scores), "plots/roc_curve.png")
    mlflow.log_figure(plots.precision_recall(y_hold, scores), "plots/precision_recall.png")
    mlflow.log_figure(plots.calibration(y_hold, scores), "plots/calibration.png")
    mlflow.log_figure(plots.importance(raw, names), "plots/shap_importance.png")
    mlflow.log_figure(plots.shap_summary(shap_values, encoded), "plots/shap_summary.png")


def _write_artifacts(
    directory: Path, pipeline: Pipeline, explainer: Any, metadata: dict[str, Any]
) -> dict[str, str]:
    paths = {
        "pipeline": directory / "pipeline.joblib",
        "explainer": directory / "explainer.joblib",
        "metadata": directory / "metadata.json",
    }
    joblib.dump(pipeline, paths["pipeline"])
    joblib.dump(explainer, paths["explainer"])
    paths["metadata"].write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    return {key: str(path) for key, path in paths.items()}


@dataclass(frozen=True)
class Split:
    """The stratified training and holdout parts of a dataset."""

    X_train: pd.DataFrame
    X_hold: pd.DataFrame
    y_train: np.ndarray
    y_hold: np.ndarray
    ids_hold: pd.Series
    sensitive_train: pd.DataFrame  # The training rows' protected attributes.
    sensitive_hold: pd.DataFrame  # The holdout rows' protected attributes.


@dataclass(frozen=True)
class Searched:
    """The search's best parameters and out-of-fold scores, and the decision threshold they give."""

    result: SearchResult
    threshold: float
    baseline_oof: np.ndarray
    baseline_threshold: float


@dataclass(frozen=True)
class Evaluated:
    """The final pipeline fitted on the training part, and every metric of it and of the baseline."""

    model: Pipeline
    metrics: dict[str, float]
    hold_scores: np.ndarray
    baseline_hold: np.ndarray


@dataclass(frozen=True)
class Explained:
    """The TreeSHAP explainer and how encoded columns sum back to raw features."""

    explainer: Any
    owners: np.ndarray  # The raw feature of each encoded column.
    raw_features: list[str]
    aggregate: np.ndarray  # Encoded-to-raw summing matrix.
    additivity: float  # Largest |base value + contributions - margin| on the holdout rows.


def _split(dataset: Dataset, search: SearchConfig) -> Split:
    X_train, X_hold, y_train, y_hold, _, ids_hold, sensitive_train, sensitive_hold = train_test_split(
        dataset.features, dataset.target, dataset.ids, dataset.sensitive,
        test_size=search.holdout_fraction, stratify=dataset.target, random_state=search.seed,
    )  # fmt: skip
    return Split(X_train, X_hold, y_train, y_hold, ids_hold, sensitive_train, sensitive_hold)


def _log_inputs(config: UseCaseConfig, dataset: Dataset, split: Split, search: SearchConfig) -> str:
    """Tags, params and the dataset of the run; the git commit."""
    commit = git_commit()
    mlflow.set_tags({"use_case": config.model_name, "git_commit": commit, "mlflow.source.git.commit": commit})
    mlflow.log_params(
        {
            "use_case": config.model_name,
            "dataset_sha256": dataset.sha256,
            "dataset_rows": len(dataset.target),
            "train_rows": len(split.y_train),
            "holdout_rows": len(split.y_hold),
            "n_features": len(dataset.schema),
            # Namespaced: `mlflow run` logs its own entry-point parameters (trials, cv_folds) on this run.
            **{f"search.{key}": value for key, value in search.model_dump().items()},
            "costs.false_negative": config.costs.false_negative,
            "costs.false_positive": config.costs.false_positive,
        }
    )
    frame = pd.concat([dataset.ids, dataset.features], axis=1).assign(**{config.data.target: dataset.target})
    with _quiet_mlflow_hints():
        mlflow.log_input(
            from_pandas(
                frame, source=str(dataset.source), targets=config.data.target, name=config.model_name
            ),
            context="training",
        )
    return commit


def _search_and_threshold(
    config: UseCaseConfig,
    dataset: Dataset,
    split: Split,
    cv: StratifiedKFold,
    weights: np.ndarray | None,
) -> Searched:
    """Tune by out-of-fold ROC AUC, then pick the cost-optimal threshold on the out-of-fold scores."""
    numeric, categorical, search = dataset.numeric, dataset.categorical, config.search
    log.info("searching %d trials with %d-fold stratified CV", search.trials, search.cv_folds)
    result = tune(
        split.X_train, split.y_train, numeric, categorical, trials=search.trials, cv=cv, seed=search.seed,
        sample_weight=weights, on_trial=lambda n, _p, auc: mlflow.log_metric("trial_cv_roc_auc", auc, step=n),
    )  # fmt: skip
    mlflow.log_params({f"xgb_{key}": value for key, value in result.params.items()})
    threshold = choose_threshold(split.y_train, result.oof_scores, config.costs)
    log.info("best cv ROC AUC %.4f; cost-optimal threshold %.4f", result.cv_roc_auc, threshold)
    baseline_oof = oof_scores(baseline_pipeline(numeric, categorical), split.X_train, split.y_train, cv)
    baseline_threshold = choose_threshold(split.y_train, baseline_oof, config.costs)
    return Searched(result, threshold, baseline_oof, baseline_threshold)


def _evaluate(
    config: UseCaseConfig, dataset: Dataset, split: Split, searched: Searched, weights: np.ndarray | None
) -> Evaluated:
    """Fit the final pipeline (with the search's weights) and the baseline; CV and holdout metrics of both."""
    numeric, categorical, costs = dataset.numeric, dataset.categorical, config.costs
    model = xgb_pipeline(numeric, categorical, searched.result.params, config.search.seed)
    model.fit(split.X_train, split.y_train, **weighted(weights))
    baseline = baseline_pipeline(numeric, categorical).fit(split.X_train, split.y_train)
    hold_scores = model.predict_proba(split.X_hold)[:, 1]
    baseline_hold = baseline.predict_proba(split.X_hold)[:, 1]
    threshold, baseline_threshold = searched.threshold, searched.baseline_threshold
    y_train, y_hold = split.y_train, split.y_hold
    metrics = {
        "threshold": threshold,
        **_prefixed("cv", classification_metrics(y_train, searched.result.oof_scores, threshold, costs)),
        **_prefixed("holdout", classification_metrics(y_hold, hold_scores, threshold, costs)),
        "baseline_threshold": baseline_threshold,
        **_prefixed(
            "baseline_cv", classification_metrics(y_train, searched.baseline_oof, baseline_threshold, costs)
        ),
        **_prefixed(
            "baseline_holdout", classification_metrics(y_hold, baseline_hold, baseline_threshold, costs)
        ),
    }
    mlflow.log_metrics(metrics)
    log.info(
        "holdout ROC AUC %.4f (baseline %.4f), cost per case %.1f (baseline %.1f)",
        metrics["holdout_roc_auc"], metrics["baseline_holdout_roc_auc"],
        metrics["holdout_business_cost_per_case"], metrics["baseline_holdout_business_cost_per_case"],
    )  # fmt: skip
    return Evaluated(model, metrics, hold_scores, baseline_hold)


def _assess_fairness(config: UseCaseConfig, split: Split, evaluated: Evaluated) -> dict[str, Any] | None:
    """Figures by protected group on the holdout, logged with their plot; a warning per flag."""
    policy = config.fairness
    if policy is None:
        return None
    scores = evaluated.hold_scores
    summary = fairness.assess(
        split.sensitive_hold.reset_index(drop=True),
        decisions=(scores >= evaluated.metrics["threshold"]).astype(np.int64),
        scores=scores, actual=split.y_hold.astype(np.float64), policy=policy, source="holdout",
    )  # fmt: skip
    mlflow.log_metrics(
        {
            f"fairness.{fairness.metric_key(item['attribute'], key)}": item[key]
            for item in summary["attributes"]
            for key in ("demographic_parity_ratio", "equalized_odds_difference")
            if item[key] is not None
        }
    )
    mlflow.log_dict(summary, fairness.ARTIFACT)
    mlflow.log_figure(fairness.plot(summary), "plots/fairness.png")
    for item in summary["attributes"]:
        if item["flagged"]:
            log.warning("%s: holdout %s", config.model_name, fairness.describe(item, policy.min_ratio))
    return summary


def _mitigation(config: UseCaseConfig, split: Split) -> np.ndarray | None:
    """The training rows' weights when the config switches reweighing on; None otherwise."""
    policy = config.fairness
    if policy is None:
        return None
    mlflow.log_param("fairness.mitigation", policy.mitigation)
    if policy.mitigation == "none":
        return None
    weights = protected.reweighing(split.sensitive_train.reset_index(drop=True), split.y_train, policy)
    log.info("reweighing training rows by group: weights %.3f to %.3f", weights.min(), weights.max())
    return weights


def _assess_proxies(config: UseCaseConfig, dataset: Dataset, split: Split) -> dict[str, Any] | None:
    """How well the inputs predict each protected attribute on the training rows, logged."""
    if config.fairness is None:
        return None
    found = protected.proxies(
        split.X_train.reset_index(drop=True), split.sensitive_train.reset_index(drop=True),
        numeric=dataset.numeric, categorical=dataset.categorical, policy=config.fairness,
        seed=config.search.seed,
    )  # fmt: skip
    mlflow.log_dict(found, PROXIES_ARTIFACT)
    mlflow.log_metrics(
        {
            f"fairness.{fairness.metric_key(name, 'proxy_roc_auc')}": item["all_inputs"]
            for name, item in found["attributes"].items()
            if item["all_inputs"] is not None
        }
    )
    return found


def _explain(dataset: Dataset, split: Split, evaluated: Evaluated) -> Explained:
    """The TreeSHAP explainer of the final model, and the holdout's plots."""
    preprocess = evaluated.model.named_steps["preprocess"]
    owners = encoded_to_raw(preprocess, dataset.numeric, dataset.categorical)
    raw_features = dataset.numeric + dataset.categorical
    explainer = shap.TreeExplainer(evaluated.model.named_steps["model"])
    aggregate = np.zeros((len(owners), len(raw_features)))
    aggregate[np.arange(len(owners)), owners] = 1.0
    encoded_hold = pd.DataFrame(
        preprocess.transform(split.X_hold), columns=preprocess.get_feature_names_out()
    )
    shap_hold = np.asarray(explainer.shap_values(encoded_hold.to_numpy()), dtype=np.float64)
    margin = evaluated.model.named_steps["model"].predict(encoded_hold.to_numpy(), output_margin=True)
    expected = float(np.ravel(explainer.expected_value)[0])
    additivity = float(np.max(np.abs(shap_hold.sum(axis=1) + expected - margin), initial=0.0))
    mlflow.log_metric("shap_additivity_max_error", additivity)
    _log_figures(
        split.y_hold,
        {"xgboost": evaluated.hold_scores, "logistic baseline": evaluated.baseline_hold},
        raw=shap_hold @ aggregate, names=raw_features, shap_values=shap_hold, encoded=encoded_hold,
    )  # fmt: skip
    return Explained(explainer, owners, raw_features, aggregate, additivity)


def _log_reference(
    work: Path, split: Split, *, searched: Searched, evaluated: Evaluated, explained: Explained, seed: int
) -> None:
    """The sample monitoring compares traffic with: training rows, their scores, mean |SHAP|."""
    X_train = split.X_train
    reference = X_train.sample(n=min(REFERENCE_ROWS, len(X_train)), random_state=seed)
    encoded_ref = evaluated.model.named_steps["preprocess"].transform(reference)
    shap_ref = np.asarray(explained.explainer.shap_values(encoded_ref), dtype=np.float64)
    raw_ref = shap_ref @ explained.aggregate
    # Out-of-fold scores: the final model's scores on rows it was fitted on are more extreme than
    # on new rows, and would make every production window look drifted.
    oof = searched.result.oof_scores[X_train.index.get_indexer(reference.index)]
    reference.assign(score=oof).to_parquet(work / "train_sample.parquet")
    mean_abs = dict(zip(explained.raw_features, np.abs(raw_ref).mean(axis=0).tolist(), strict=True))
    (work / "shap_mean_abs.json").write_text(json.dumps(mean_abs, indent=2))
    mlflow.log_artifact(str(work / "train_sample.parquet"), "reference")
    mlflow.log_artifact(str(work / "shap_mean_abs.json"), "reference")


def _package(
    work: Path,
    config: UseCaseConfig,
    dataset: Dataset,
    split: Split,
    *,
    evaluated: Evaluated,
    explained: Explained,
    decision: dict[str, Any],
) -> str:
    """Log the explainable pyfunc with its artifacts and signature, registered; its version."""
    metadata = {
        "input_columns": [feature.name for feature in dataset.schema],
        "raw_features": explained.raw_features,
        "encoded_to_raw": explained.owners.tolist(),
        "id_column": str(dataset.ids.name),
        # Feature -> reason code and statement; the features left out are never given as reasons.
        "reasons": {name: entry.model_dump() for name, entry in config.reasons.catalogue.items()}
        if config.reasons is not None
        else None,
        **decision,
    }
    artifacts = _write_artifacts(work, evaluated.model, explained.explainer, metadata)
    id_type = "long" if pd.api.types.is_integer_dtype(dataset.ids) else "string"
    example = pd.concat([split.ids_hold, split.X_hold], axis=1).head(3).reset_index(drop=True)
    log.info("logging the explainable pyfunc and registering it as %r", config.model_name)
    with _quiet_mlflow_hints():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts=artifacts,
            signature=_signature(dataset, id_type, decision["threshold"]),
            input_example=example,
            pip_requirements=_requirements(),
            registered_model_name=config.model_name,
            metadata={
                "use_case": config.model_name,
                **decision,
                "features": _feature_facts(split.X_train, dataset.numeric, dataset.categorical),
            },
        )
    return str(info.registered_model_version)


def _register(
    config: UseCaseConfig,
    dataset: Dataset,
    version: str,
    *,
    metrics: dict[str, float],
    commit: str,
    baseline: BaselineVerdict,
) -> None:
    """The version's tags (key metrics, threshold, data, commit, baseline) and descriptions."""
    client = MlflowClient()
    client.set_model_version_tag(config.model_name, version, "beats_baseline", str(baseline.beaten).lower())
    client.set_model_version_tag(config.model_name, version, "baseline_tolerance", str(baseline.tolerance))
    client.set_model_version_tag(config.model_name, version, "baseline_comparison", baseline.describe())
    for key, value in config.promotion.model_dump().items():  # Read by the live-shadow gate.
        client.set_model_version_tag(config.model_name, version, f"promotion.{key}", str(value).lower())
    for key, value in config.rollout.model_dump().items():  # Read by `registry_scripts rollout`.
        client.set_model_version_tag(config.model_name, version, f"rollout.{key}", str(value))
    for key in VERSION_TAG_METRICS:
        client.set_model_version_tag(config.model_name, version, key, f"{metrics[key]:.6f}")
    client.set_model_version_tag(config.model_name, version, "threshold", f"{metrics['threshold']:.6f}")
    client.set_model_version_tag(config.model_name, version, "dataset_sha256", dataset.sha256)
    client.set_model_version_tag(config.model_name, version, "git_commit", commit)
    client.update_model_version(
        config.model_name,
        version,
        description=(
            f"{config.description.strip()} Holdout ROC AUC {metrics['holdout_roc_auc']:.4f}, "
            f"threshold {metrics['threshold']:.4f}, trained on {dataset.source.name} ({dataset.sha256[:12]})."
        ).strip(),
    )
    if config.description:
        client.update_registered_model(config.model_name, description=config.description.strip())


@contextmanager
def _training_run(config: UseCaseConfig) -> Iterator[mlflow.ActiveRun]:
    """The run, in the model's experiment; `mlflow run` without `--experiment-name` made one in Default."""
    launched = MLFLOW_RUN_ID.get()
    if launched:
        outer = MlflowClient().get_run(launched)
        if outer.info.experiment_id != DEFAULT_EXPERIMENT_ID:  # The experiment the user chose.
            with mlflow.start_run(run_id=launched, run_name=f"train-{config.model_name}") as run:
                yield run
            return
    mlflow.set_experiment(config.experiment_name)
    with _without_launched_run(), mlflow.start_run(run_name=f"train-{config.model_name}") as run:
        if launched:
            MlflowClient().set_tag(
                launched,
                "mlflow.note.content",
                f"Training logged to experiment {config.experiment_name!r}, run {run.info.run_id}.",
            )
            mlflow.set_tag("launched_by_run", launched)
        yield run


@contextmanager
def _without_launched_run() -> Iterator[None]:
    """Hide MLFLOW_RUN_ID so that `start_run` makes a new run instead of resuming the launched one."""
    launched = os.environ.pop(MLFLOW_RUN_ID.name, None)
    try:
        yield
    finally:
        if launched is not None:
            os.environ[MLFLOW_RUN_ID.name] = launched


def _card_facts(
    config: UseCaseConfig,
    dataset: Dataset,
    split: Split,
    *,
    searched: Searched,
    explained: Explained,
    metrics: dict[str, float],
    fairness_summary: dict[str, Any] | None,
    proxies: dict[str, Any] | None,
) -> dict[str, Any]:
    """What the run knows that the model card says."""
    return {
        "model_name": config.model_name,
        "description": config.description.strip(),
        "card": config.card.model_dump(),
        "data": {
            "source": dataset.source.name, "rows": len(dataset.target), "train_rows": len(split.y_train),
            "holdout_rows": len(split.y_hold), "positive_share": float(np.mean(dataset.target)),
            "positive_label": dataset.positive_label, "target": config.data.target, "sha256": dataset.sha256,
        },
        "inputs": [feature.name for feature in dataset.schema],
        "dropped": list(config.data.drop_columns),
        "reasons": None if config.reasons is None else {"excluded": list(config.reasons.exclude)},
        "metrics": metrics,
        "costs": config.costs.model_dump(),
        "params": searched.result.params,
        "additivity": explained.additivity,
        "fairness": fairness_summary,
        "protected": {
            "attributes": list(config.protected),
            "justified_inputs": dict(config.protected_inputs),
            "monitored": [feature.name for feature in dataset.monitored],
            "mitigation": config.fairness.mitigation if config.fairness else "none",
            "proxies": proxies,
        },
    }  # fmt: skip


def _log_card(config: UseCaseConfig, facts: dict[str, Any]) -> None:
    """The model card, Markdown and HTML, in the run's `model_card/`; the version's tag points to it."""
    parts = model_card.sections(facts)
    title = f"Model card: {facts['model_name']} version {facts['version']}"
    mlflow.log_text(model_card.markdown(parts, title), f"{CARD_DIR}/model_card.md")
    mlflow.log_text(model_card.page(parts, title), f"{CARD_DIR}/model_card.html")
    MlflowClient().set_model_version_tag(config.model_name, facts["version"], "model_card", CARD_DIR)


def train(
    config: UseCaseConfig, *, trials: int | None = None, cv_folds: int | None = None
) -> TrainingOutcome:
    """Train, evaluate, log and register one model version for a use case, step by step."""
    overrides = {k: v for k, v in {"trials": trials, "cv_folds": cv_folds}.items() if v is not None}
    try:
        search = SearchConfig.model_validate({**config.search.model_dump(), **overrides})
    except ValidationError as exc:
        raise ConfigError(format_validation_error("search overrides", exc)) from None
    config = config.model_copy(update={"search": search})
    dataset = load_dataset(config)
    log.info(
        "loaded %s: %d rows, %d features, %.1f%% %r", dataset.source.name, len(dataset.target),
        len(dataset.schema), 100 * dataset.target.mean(), dataset.positive_label,
    )  # fmt: skip
    inputs = [feature.name for feature in dataset.schema]
    config.check_protected(inputs)  # Like a bad catalogue, this stops before any run is made.
    if config.reasons is not None:
        config.reasons.check(inputs)
    else:
        log.warning(
            "%s: no `reasons:` catalogue: the model will refuse the `reasons` param", config.model_name
        )
    split = _split(dataset, search)
    with _training_run(config) as run:
        commit = _log_inputs(config, dataset, split, search)
        weights = _mitigation(config, split)
        searched = _search_and_threshold(config, dataset, split, folds(search.cv_folds, search.seed), weights)
        evaluated = _evaluate(config, dataset, split, searched, weights)
        assessed = _assess_fairness(config, split, evaluated)
        proxies = _assess_proxies(config, dataset, split)
        explained = _explain(dataset, split, evaluated)
        # The decision and its words, written once: the pyfunc's artifacts and the model's metadata.
        decision = {
            "threshold": searched.threshold,
            "target": config.data.target,
            "negative_label": dataset.negative_label,
            "positive_label": dataset.positive_label,
        }
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            _log_reference(
                work, split, searched=searched, evaluated=evaluated, explained=explained, seed=search.seed
            )
            version = _package(
                work, config, dataset, split, evaluated=evaluated, explained=explained, decision=decision
            )
        metrics = evaluated.metrics
        baseline = BaselineVerdict(
            metrics["cv_roc_auc"], metrics["baseline_cv_roc_auc"], search.baseline_tolerance
        )
        if not baseline.beaten:
            log.warning("%s: %s", config.model_name, baseline.describe())
        _register(config, dataset, version, metrics=metrics, commit=commit, baseline=baseline)
        facts = _card_facts(
            config, dataset, split, searched=searched, explained=explained, metrics=metrics,
            fairness_summary=assessed, proxies=proxies,
        )  # fmt: skip
        _log_card(
            config, {**facts, "version": version, "run_id": run.info.run_id, "git_commit": commit,
                     "baseline_verdict": baseline.describe()},
        )  # fmt: skip
        return TrainingOutcome(
            run.info.run_id, config.model_name, version, searched.threshold, metrics, baseline
        )
