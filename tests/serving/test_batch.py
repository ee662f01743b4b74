"""Batch scoring on Spark: `spark_udf` and `python -m serving.batch` (both scorers) agree with predict."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from mlflow.pyfunc import PyFuncModel
from mlflow.tracking import MlflowClient
from mlflow.tracking._model_registry import utils as registry_utils
from mlflow.tracking._tracking_service import utils as tracking_utils
from sqlalchemy import create_engine, text

from serving.batch import arrow
from serving.batch.__main__ import main
from tests.conftest import REPO, subprocess_env
from training.job import TrainingOutcome

pytest.importorskip("pyspark", reason="batch scoring needs the Spark extra: pip install -e '.[spark]'")
from pyspark.sql import SparkSession  # Only once the extra is known to be installed.
from pyspark.sql import functions as sf
from pyspark.sql.pandas.types import to_arrow_type

from serving.batch.columns import result_type

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """One local Spark on two cores for the module; the command run in-process uses it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYSPARK_PYTHON", sys.executable)  # Workers need this virtualenv's packages.
        session = (
            SparkSession.builder.master("local[2]")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        yield session
        session.stop()


def assert_same(got: pd.DataFrame, expected: pd.DataFrame, id_column: str) -> None:
    """Score, decision, unseen flags and contributions of every row agree (1e-9), matched by id."""
    got = got.sort_values(id_column).reset_index(drop=True)
    expected = expected.sort_values(id_column).reset_index(drop=True)
    assert len(got) == len(expected)
    assert (got[id_column].to_numpy() == expected[id_column].to_numpy()).all()
    np.testing.assert_allclose(got["score"], expected["score"], rtol=0, atol=TOLERANCE)
    assert (got["prediction"].to_numpy() == expected["prediction"].to_numpy()).all()
    assert [list(u) for u in got["unseen_categories"]] == [list(u) for u in expected["unseen_categories"]]
    for pairs, theirs in zip(got["contributions"], expected["contributions"], strict=True):
        mine = dict(pairs)
        assert mine.keys() == theirs.keys()
        assert max(abs(mine[k] - theirs[k]) for k in theirs) <= TOLERANCE


def parquet_parts(folder: Path, rows: int) -> tuple[pd.DataFrame, Path]:
    """The attrition data as a folder of Parquet files of `rows` rows each."""
    data = pd.read_csv(REPO / "data" / "attrition.csv")
    folder.mkdir()
    for i, start in enumerate(range(0, len(data), rows)):
        data.iloc[start : start + rows].to_parquet(folder / f"part-{i}.parquet")
    return data, folder


def in_process(model: PyFuncModel, csv: Path) -> pd.DataFrame:
    """What the model loaded here answers for the whole CSV."""
    return model.predict(pd.read_csv(csv))


def test_the_signature_declares_what_the_model_answers(attrition_model: PyFuncModel) -> None:
    outputs = attrition_model.metadata.get_output_schema()
    assert outputs is not None
    assert [(spec.name, spec.required) for spec in outputs.inputs] == [
        ("employee_id", False),
        ("score", True),
        ("prediction", True),
        ("threshold", True),
        ("base_value", True),
        ("unseen_categories", True),
        ("contributions", False),
    ]
    answer = attrition_model.predict(pd.read_csv(REPO / "data" / "attrition.csv", nrows=3))
    assert isinstance(answer, pd.DataFrame) and list(answer.columns) == outputs.input_names()


@pytest.mark.parametrize(("name", "id_column"), [("attrition", "employee_id"), ("credit", "client_id")])
def test_spark_udf_with_its_defaults_agrees_with_in_process(
    spark: SparkSession,
    request: pytest.FixtureRequest,
    name: str,
    id_column: str,
) -> None:
    outcome: TrainingOutcome = request.getfixturevalue(name)
    model: PyFuncModel = request.getfixturevalue(f"{name}_model")
    csv = REPO / "data" / f"{name}.csv"
    udf = mlflow.pyfunc.spark_udf(spark, f"models:/{name}/{outcome.version}")
    frame = spark.read.csv(str(csv), header=True, inferSchema=True)
    scored = frame.select(udf(sf.struct(*frame.columns)).alias("scored")).select("scored.*").toPandas()
    assert_same(scored, in_process(model, csv), id_column)


def test_the_command_scores_a_csv_with_missing_values_like_in_process(
    credit: TrainingOutcome, credit_model: PyFuncModel, client: MlflowClient, tmp_path: Path
) -> None:
    output = tmp_path / "scored"
    csv = REPO / "data" / "credit.csv"
    assert pd.read_csv(csv).isna().any().any()  # The case this test is for.
    done = subprocess.run(
        [sys.executable, "-m", "serving.batch", "--model", "credit", "--version", credit.version,
         "--input", str(csv), "--output", str(output), "--master", "local[2]"],
        env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    written = pd.read_parquet(output)
    assert list(written.columns) == [
        "client_id", "score", "prediction", "threshold", "base_value", "unseen_categories",
        "contributions", "model_name", "model_version", "scored_at",
    ]  # fmt: skip
    assert set(written["model_name"]) == {"credit"} and set(written["model_version"]) == {int(credit.version)}
    assert_same(written, in_process(credit_model, csv), "client_id")
    assert not list(tmp_path.glob("scored.*")), "the staging folder is left behind"
    experiment = client.get_experiment_by_name("batch-scoring")
    assert experiment is not None
    run = client.search_runs(
        [experiment.experiment_id],
        f"params.model_name = 'credit' and params.output = '{output}'",
    )[0]
    assert run.data.metrics["rows"] == len(written) and run.data.metrics["rows_per_second"] > 0
    assert run.data.params["spark_master"] == "local[2]"
    assert run.data.params["model_version"] == credit.version
    assert len(run.data.tags["input_sha256"]) == 64
    assert "rows in" in done.stderr and "not sent to the model: ['Status']" in done.stderr


def test_the_command_reads_a_parquet_folder_and_keeps_params(
    spark: SparkSession, attrition: TrainingOutcome, attrition_model: PyFuncModel, tmp_path: Path
) -> None:
    data, folder = parquet_parts(tmp_path / "parts", 500)
    output = tmp_path / "scored"
    params = '{"top_k": 3, "threshold": 0.5}'
    assert main(["--model", "attrition", "--version", attrition.version, "--input", str(folder),
                 "--output", str(output), "--params", params]) == 0  # fmt: skip
    written = pd.read_parquet(output)
    expected = attrition_model.predict(data, params={"top_k": 3, "threshold": 0.5})
    assert_same(written, expected, "employee_id")
    assert (written["threshold"] == 0.5).all() and all(len(c) == 3 for c in written["contributions"])
    assert main(["--model", "attrition", "--version", attrition.version, "--input", str(folder),
                 "--output", str(output), "--params", '{"explain": false}']) == 2  # fmt: skip
    assert main(["--model", "attrition", "--version", attrition.version, "--input", str(folder),
                 "--output", str(output), "--params", '{"explain": false}', "--overwrite"]) == 0  # fmt: skip
    assert "contributions" not in pd.read_parquet(output).columns
    assert main(["--model", "attrition", "--version", attrition.version, "--input", str(folder),
                 "--output", str(output), "--params", '{"reasons": 2}', "--overwrite"]) == 0  # fmt: skip
    written = pd.read_parquet(output).sort_values("employee_id").reset_index(drop=True)
    expected = pd.DataFrame(attrition_model.predict(data, params={"reasons": 2}))
    expected = expected.sort_values("employee_id").reset_index(drop=True)
    assert [[dict(r) for r in found] for found in written["reasons"]] == list(expected["reasons"])


def test_without_a_log_the_tasks_write_the_output_as_spark_would(
    spark: SparkSession, attrition: TrainingOutcome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = str(REPO / "data" / "attrition.csv")
    by_tasks, by_spark = tmp_path / "tasks", tmp_path / "spark"
    assert main(["--model", "attrition", "--version", attrition.version, "--input", csv,
                 "--output", str(by_tasks)]) == 0  # fmt: skip
    names = sorted(path.name for path in by_tasks.iterdir())
    assert names == ["_SUCCESS", *(f"part-{i:05d}.parquet" for i in range(len(names) - 1))]  # Nothing aside.
    # Where pyarrow cannot reach the output (`s3a://`, `dbfs:/`), Spark's own writer writes it.
    assert arrow.can_write(f"file:{tmp_path}") and not arrow.can_write("s3a://bucket/scored")
    monkeypatch.setattr(arrow, "can_write", lambda location: False)
    assert main(["--model", "attrition", "--version", attrition.version, "--input", csv,
                 "--output", str(by_spark)]) == 0  # fmt: skip
    assert spark.read.parquet(str(by_tasks)).schema == spark.read.parquet(str(by_spark)).schema
    mine, theirs = (pd.read_parquet(path).sort_values("employee_id") for path in (by_tasks, by_spark))
    assert list(mine.columns) == list(theirs.columns) and len(mine) == len(theirs) == 1470
    assert_same(mine, theirs.assign(contributions=[dict(c) for c in theirs["contributions"]]), "employee_id")


@pytest.mark.parametrize(("name", "id_column"), [("attrition", "employee_id"), ("credit", "client_id")])
def test_the_arrow_path_answers_as_spark_udf_does(
    spark: SparkSession, request: pytest.FixtureRequest, tmp_path: Path, name: str, id_column: str
) -> None:
    """The same rows through both scorers of the command, reason codes and all."""
    outcome: TrainingOutcome = request.getfixturevalue(name)
    csv = str(REPO / "data" / f"{name}.csv")
    for scorer in ("arrow", "spark_udf"):
        assert main(["--model", name, "--version", outcome.version, "--input", csv, "--scorer", scorer,
                     "--output", str(tmp_path / scorer), "--params", '{"reasons": 3}']) == 0  # fmt: skip
    by_arrow, by_udf = (
        pd.read_parquet(tmp_path / scorer).sort_values(id_column).reset_index(drop=True)
        for scorer in ("arrow", "spark_udf")
    )
    assert list(by_arrow.columns) == list(by_udf.columns)
    assert_same(by_arrow, by_udf.assign(contributions=[dict(c) for c in by_udf["contributions"]]), id_column)
    assert (by_arrow["threshold"] == by_udf["threshold"]).all()
    assert (by_arrow["base_value"] == by_udf["base_value"]).all()
    assert [[dict(r) for r in found] for found in by_arrow["reasons"]] == [
        [dict(r) for r in found] for found in by_udf["reasons"]
    ]


def _bad(tmp_path: Path, data: pd.DataFrame, suffix: str = ".csv") -> Path:
    path = tmp_path / f"bad{suffix}"
    data.to_csv(path, index=False) if suffix == ".csv" else data.to_parquet(path)
    return path


@pytest.mark.parametrize(
    ("change", "suffix", "message"),
    [
        (lambda d: d.drop(columns=["JobLevel", "OverTime"]), ".csv",
         "--input: missing column(s) ['JobLevel', 'OverTime']"),
        (lambda d: d.assign(Age=d["Age"].astype(str).where(d.index != 7, "forty")), ".csv",
         "--input: column 'Age': value 'forty' is not a bigint"),
        (lambda d: d.assign(OverTime=(d["OverTime"] == "Yes")), ".parquet",
         "--input: column 'OverTime' is boolean, the model needs string"),
        (lambda d: d.assign(Age=d["Age"] + 0.5), ".parquet",
         "--input: column 'Age' is double, the model needs whole numbers (bigint)"),
        (lambda d: d.drop(columns=["employee_id"]), ".parquet", "--input: missing column(s) ['employee_id']"),
    ],
)  # fmt: skip
def test_bad_input_stops_with_one_line_and_leaves_nothing(
    spark: SparkSession,
    attrition: TrainingOutcome,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    *,
    change: object,
    suffix: str,
    message: str,
) -> None:
    assert callable(change)
    source = _bad(tmp_path, change(pd.read_csv(REPO / "data" / "attrition.csv")), suffix)
    output = tmp_path / "scored"
    code = main(["--model", "attrition", "--version", attrition.version, "--input", str(source),
                 "--output", str(output)])  # fmt: skip
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert (code, error) == (2, f"error: {message}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--version", "999"], "error: --version: "),
        (["--alias", "nobody-has-this"], "error: --alias: "),
        (["--params", '{"top_k": -1}'], "error: --params.top_k: Input should be greater than or equal to 0"),
        (["--params", '{"depth": 3}'], "error: --params.depth: Extra inputs are not permitted"),
        (["--params", "[1]"], "error: --params: must be a JSON object, got list"),
        (["--input", "nowhere.csv"], "error: --input: nowhere.csv does not exist"),
        (["--input", "{mixed}"], "error: --input: cannot tell the format of"),
        (["--output", "{data}"], "already exists; remove it or pass --overwrite"),
        (["--env-manager", "virtualenv"], "error: --env-manager: virtualenv needs --scorer spark_udf"),
    ],
)
def test_bad_options_stop_before_spark_starts(
    attrition: TrainingOutcome, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    arguments: list[str], message: str,
) -> None:  # fmt: skip
    given = {"--version": attrition.version, "--input": str(REPO / "data" / "attrition.csv"),
             "--output": str(tmp_path / "out")}  # fmt: skip
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.csv").write_text("x\n1\n")
    (mixed / "b.parquet").write_bytes(b"")
    arguments = [a.replace("{data}", str(REPO / "data")).replace("{mixed}", str(mixed)) for a in arguments]
    if arguments[0] in ("--alias", "--stage"):
        given.pop("--version")
    given.update(dict(zip(arguments[::2], arguments[1::2], strict=True)))
    argv = ["--model", "attrition", *[part for pair in given.items() for part in pair]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unreadable_file_is_named(
    spark: SparkSession, attrition: TrainingOutcome, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet")
    assert main(["--model", "attrition", "--version", attrition.version, "--input", str(broken),
                 "--output", str(tmp_path / "out")]) == 2  # fmt: skip
    assert capsys.readouterr().err.startswith(f"error: --input: cannot read {broken}: ")
    assert not (tmp_path / "out").exists()


def test_the_log_store_gets_every_row_under_one_batch_request(
    spark: SparkSession,
    attrition: TrainingOutcome,
    postgres_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "scored"
    assert main(["--model", "attrition", "--version", attrition.version, "--input",
                 str(REPO / "data" / "attrition.csv"), "--output", str(output), "--log-store", postgres_url,
                 "--params", '{"top_k": 2}']) == 0  # fmt: skip
    written = pd.read_parquet(output).set_index("employee_id")
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            columns = "endpoint, model_name, model_version, n_rows, status_code"
            found = connection.execute(text(f"SELECT {columns} FROM inference_requests"))
            requests = [tuple(row) for row in found]
            query = "SELECT row_index, entity_id, input, score, contributions FROM inference_predictions"
            logged = pd.DataFrame(connection.execute(text(query)).mappings().all())
    finally:
        engine.dispose()
    assert requests == [("batch", "attrition", int(attrition.version), 1470, 200)]
    assert sorted(logged["row_index"]) == list(range(1470))
    logged = logged.set_index(logged["entity_id"].astype(int)).sort_index()
    np.testing.assert_allclose(logged["score"], written.sort_index()["score"], rtol=0, atol=TOLERANCE)
    assert all(len(c) == 2 for c in logged["contributions"])
    first = logged["input"].iloc[0]
    assert first["employee_id"] == 1 and "Age" in first and "Attrition" not in first
    assert "log: 1470/1470 rows" in capsys.readouterr().err


def test_a_model_without_columns_is_answered_alike_through_its_predict(
    attrition: TrainingOutcome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version trained before the pyfunc had `columns` gets the same struct, built from `predict`."""
    uri = f"models:/attrition/{attrition.version}"
    model = mlflow.pyfunc.load_model(uri)
    signature = model.metadata.signature
    assert signature is not None and signature.outputs is not None
    result = to_arrow_type(result_type(signature.outputs, leave_out={"employee_id"}, reasons=True))
    data = pd.read_csv(REPO / "data" / "attrition.csv", nrows=200).drop(columns=["Attrition"])
    rows = pa.RecordBatch.from_pandas(data)
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    # The scorer sets MLflow's URIs (globals and environment) as an executor must; here, in the test's
    # own process, everything it sets is put back afterwards, or later commands would inherit them.
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # Recorded as it was: set, or absent.
        if not os.environ[name]:
            monkeypatch.delenv(name)
    monkeypatch.setitem(sys.modules, arrow.CACHE, types.ModuleType(arrow.CACHE))

    def scored() -> pa.StructArray:
        score = arrow.scorer(
            uri, {"reasons": 2, "top_k": 5}, result, "_scored", tracking=tracking, registry=registry
        )
        (batch,) = score(iter([rows]))
        return batch.column("_scored")

    columnar = scored()
    monkeypatch.setattr(arrow, "_columnar", lambda python_model: None)
    assert scored().equals(columnar)
