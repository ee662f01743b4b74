"""What the benchmark compares, built from scratch in its own MLflow store."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import joblib
import mlflow
import shap
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from registry_scripts.actions import promote
from registry_scripts.rollout import CANARY, SHARE_TAG
from training.config import load_config
from training.data import load_dataset
from training.features import encoded_to_raw
from training.job import train
from training.search import xgb_pipeline

logger = logging.getLogger(__name__)

MODELS = Path(__file__).with_name("models")
OURS = "attrition"
CANARIED = f"{OURS}-canary"  # The same model again, with a rollout at 50% in progress.
CANARY_SHARE = 50
CONSTANT = "bench-constant"
SEED_STYLE = "bench-seed-style"
# The usual model of the issue that set the goals: 300 trees of depth 4.
SEED_STYLE_PARAMS = {"n_estimators": 300, "max_depth": 4, "learning_rate": 0.05}


@dataclass(frozen=True)
class Subjects:
    """Our model in Production and the two pyfuncs it is measured against, with the same signature."""

    version: str
    artifacts: Path
    trees: int
    max_depth: int

    @property
    def constant_uri(self) -> str:
        """The constant pyfunc."""
        return f"models:/{CONSTANT}/1"

    @property
    def seed_style_uri(self) -> str:
        """The seed-style pyfunc."""
        return f"models:/{SEED_STYLE}/1"


def _seed_style_artifacts(ours: Path, directory: Path) -> dict[str, str]:
    """A ColumnTransformer + XGBoost pipeline of the usual size, its TreeExplainer, and metadata."""
    config = load_config(OURS)
    data = load_dataset(config)
    numeric, categorical = data.numeric, data.categorical
    pipeline = xgb_pipeline(numeric, categorical, SEED_STYLE_PARAMS, config.search.seed)
    pipeline.fit(data.features, data.target)
    meta = json.loads((ours / "metadata.json").read_text())
    meta["encoded_to_raw"] = encoded_to_raw(pipeline.named_steps["preprocess"], numeric, categorical).tolist()
    paths = {name: directory / f"{name}.{ext}" for name, ext in
             (("pipeline", "joblib"), ("explainer", "joblib"), ("metadata", "json"))}  # fmt: skip
    joblib.dump(pipeline, paths["pipeline"])
    joblib.dump(shap.TreeExplainer(pipeline.named_steps["model"]), paths["explainer"])
    paths["metadata"].write_text(json.dumps(meta), encoding="utf-8")
    return {name: str(path) for name, path in paths.items()}


def build(*, trials: int | None, cv_folds: int | None) -> Subjects:
    """Train and promote our model, then log the constant and seed-style pyfuncs beside it."""
    outcome = train(load_config(OURS), trials=trials, cv_folds=cv_folds)
    client = MlflowClient()
    promote(client, OURS, outcome.version, "production", user="bench", reason="benchmark")
    # The challenger a shadowing proxy scores too: the same artifacts again, so it costs what the model costs.
    source = client.get_model_version(OURS, outcome.version).source or ""
    challenger = client.create_model_version(OURS, source=source, run_id=outcome.run_id).version
    promote(client, OURS, str(challenger), "staging", user="bench", reason="benchmark's challenger")
    # A model of its own for the canary's proxy: every proxy of a model follows its `@canary`.
    client.create_registered_model(CANARIED)
    served, canary = (
        client.create_model_version(CANARIED, source=source, run_id=outcome.run_id).version for _ in range(2)
    )
    promote(client, CANARIED, str(served), "production", user="bench", reason="benchmark")
    client.set_registered_model_alias(CANARIED, CANARY, canary)  # What `registry_scripts rollout` writes.
    client.set_registered_model_tag(CANARIED, SHARE_TAG, str(CANARY_SHARE))
    uri = f"models:/{OURS}/{outcome.version}"
    local = Path(mlflow.artifacts.download_artifacts(uri))
    signature = mlflow.models.get_model_info(uri).signature
    example = Model.load(local).load_input_example(str(local))
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name="bench-baselines"):
        seed_style = _seed_style_artifacts(local / "artifacts", Path(tmp))
        for name, code, artifacts in (
            (CONSTANT, "constant.py", None),
            (SEED_STYLE, "seed_style.py", seed_style),
        ):
            logger.info("logging the %s pyfunc", name)
            mlflow.pyfunc.log_model(
                name=name,
                python_model=str(MODELS / code),
                artifacts=artifacts,
                signature=signature,
                input_example=example,
                pip_requirements=str(local / "requirements.txt"),
                registered_model_name=name,
            )
    params = client.get_run(outcome.run_id).data.params
    return Subjects(
        version=outcome.version,
        artifacts=local / "artifacts",
        trees=int(params["xgb_n_estimators"]),
        max_depth=int(params["xgb_max_depth"]),
    )
