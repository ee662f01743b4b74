"""A Python client with only the model's requirements loads production by both URI forms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from registry_scripts.__main__ import main as registry_main
from tests.conftest import REPO, subprocess_env
from training.job import TrainingOutcome

CLIENT = r"""
import importlib.util, json, math, os, sys
repo = os.path.realpath(sys.argv[1])
# Hide this repository (not a virtualenv inside it): its path entry and the editable install's hooks.
sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != repo]
def editable(hook):
    return "__editable__" in f"{getattr(hook, '__module__', '')} {type(hook).__module__}"
sys.meta_path[:] = [f for f in sys.meta_path if not editable(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if not editable(h)]
sys.path_importer_cache.clear()
for package in ("training", "registry_scripts", "serving"):
    assert importlib.util.find_spec(package) is None, f"{package} is importable"

import mlflow, pandas as pd
rows = pd.DataFrame(json.loads(sys.stdin.read()))
results = {}
for uri in ("models:/attrition@production", "models:/attrition/Production"):
    out = mlflow.pyfunc.load_model(uri).predict(rows, params={"top_k": 0})
    for score, base, contributions in zip(out["score"], out["base_value"], out["contributions"]):
        assert abs(base + sum(contributions.values()) - math.log(score / (1 - score))) < 1e-4
    results[uri] = out[["employee_id", "score", "prediction"]].to_dict("records")
loaded = [m for m in ("training", "registry_scripts", "serving") if m in sys.modules]
assert not loaded, loaded
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def production(attrition: TrainingOutcome, client: MlflowClient) -> str:
    """The session's attrition version, promoted to Production through the CLI."""
    assert (
        registry_main(
            ["promote", "--model", "attrition", "--version", attrition.version, "--to", "production"]
        )
        == 0
    )
    return attrition.version


def test_clean_process_loads_production_by_alias_and_by_stage(production: str, tmp_path: Path) -> None:
    rows = pd.read_csv(REPO / "data" / "attrition.csv").drop(columns=["Attrition"]).head(5)
    rows.loc[0, "JobRole"] = "Unseen_Role"
    done = subprocess.run(
        [sys.executable, "-I", "-c", CLIENT, str(REPO)],
        input=rows.to_json(orient="records"),
        env=subprocess_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    by_alias, by_stage = results["models:/attrition@production"], results["models:/attrition/Production"]
    assert by_alias == by_stage
    assert [r["employee_id"] for r in by_alias] == rows["employee_id"].tolist()


def test_the_model_ships_its_code_and_pins_its_requirements(production: str, client: MlflowClient) -> None:
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(f"models:/attrition/{production}"))
    requirements = (local / "requirements.txt").read_text().split()
    names = {r.split("==")[0] for r in requirements}
    assert {"mlflow", "xgboost", "shap", "scikit-learn", "pandas"} <= names
    assert all("==" in r for r in requirements)
    code = (local / "explainable_model.py").read_text()
    assert "from training" not in code and "import training" not in code


def test_mlflow_validates_and_predicts_with_the_output_schema(
    attrition: TrainingOutcome, tmp_path: Path
) -> None:
    """`validate_serving_input` and `mlflow models predict` still work with the declared output schema."""
    uri = f"models:/attrition/{attrition.version}"
    example = mlflow.models.Model.load(uri).get_serving_input(mlflow.artifacts.download_artifacts(uri))
    assert example is not None
    with pytest.warns(FutureWarning, match="deprecated"):  # Since MLflow 3.13; `models predict` replaces it.
        validated = mlflow.models.validate_serving_input(uri, example)
    assert list(validated[0])[:2] == ["employee_id", "score"]  # Records: it scores as the server does.
    request = tmp_path / "request.json"
    request.write_text(example)
    answer = tmp_path / "answer.json"
    done = subprocess.run(
        [sys.executable, "-m", "mlflow", "models", "predict", "-m", uri, "-i", str(request),
         "-t", "json", "-o", str(answer), "--env-manager", "local"],
        env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    predictions = json.loads(answer.read_text())["predictions"]
    assert predictions == validated
