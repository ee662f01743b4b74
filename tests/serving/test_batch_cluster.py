"""`python -m serving.batch` against a real Spark standalone cluster: a master and two one-core workers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow.pyfunc import PyFuncModel
from mlflow.tracking import MlflowClient

from bench.servers import SparkCluster, spark_cluster
from tests.conftest import subprocess_env
from tests.serving.test_batch import assert_same, parquet_parts
from training.job import TrainingOutcome

pytest.importorskip("pyspark", reason="batch scoring needs the Spark extra: pip install -e '.[spark]'")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    """Three JVMs started from the PySpark package, as a team would start them on their hosts."""
    started = spark_cluster(tmp_path_factory.mktemp("spark-cluster"), workers=2, cores=1)
    yield started
    started.stop()


@pytest.mark.integration
def test_the_command_scores_on_the_cluster_with_the_executors_loading_the_model(
    cluster: SparkCluster,
    attrition: TrainingOutcome,
    attrition_model: PyFuncModel,
    client: MlflowClient,
    tmp_path: Path,
) -> None:
    data, folder = parquet_parts(tmp_path / "parts", 400)
    output = tmp_path / "scored"
    done = subprocess.run(
        [sys.executable, "-m", "serving.batch", "--model", "attrition", "--version", attrition.version,
         "--input", str(folder), "--output", str(output), "--master", cluster.url,
         "--params", '{"reasons": 2}'],
        env=subprocess_env(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    written = pd.read_parquet(output)
    expected = pd.DataFrame(attrition_model.predict(data, params={"reasons": 2}))
    assert_same(written, expected, "employee_id")
    assert not list(tmp_path.glob("scored.*")), "the staging folder is left behind"

    state = cluster.state()
    apps = [app for app in state["completedapps"] if app["name"] == f"batch-attrition-v{attrition.version}"]
    assert apps and apps[-1]["cores"] == 2, state["completedapps"]  # One core on each worker.
    # Two executors, one a worker, each its own JVM with its own Python workers that load the model.
    executors = list((cluster.workdir / "work" / apps[-1]["id"]).glob("*/stderr"))
    assert len(executors) == 2, executors
    run = client.search_runs(
        [client.get_experiment_by_name("batch-scoring").experiment_id],  # type: ignore[union-attr]
        f"params.output = '{output}'",
    )[0]
    assert run.data.params["spark_master"] == cluster.url
