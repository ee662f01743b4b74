"""The Spark side of a batch job: session, read, score (Arrow path or `spark_udf`), write, move into place."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from py4j.protocol import Py4JError
from pyspark import cloudpickle
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql import types as st
from pyspark.sql.pandas.types import to_arrow_schema, to_arrow_type
from sqlalchemy import Engine

from logstore.database import make_engine, migrate
from logstore.errors import LogStoreError
from logstore.settings import LogStoreSettings
from serving.batch import arrow
from serving.batch.columns import ColumnMismatch, Plan, plan, result_type
from serving.batch.log import append_batch, batch_request
from serving.batch.plan import BatchFailed, Job, input_digest, literal, mlflow_run, spark_message

SCORED = "_scored"
TASKS_PER_CORE = 4
MIN_SPLIT_BYTES = 1 << 20
SPARK_ERRORS = (PySparkException, Py4JError)


def session(job: Job) -> tuple[SparkSession, bool]:
    """A Spark session on the job's master (or the one this process already has); whether it is ours."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    # Workers run this interpreter unless told otherwise: the model's requirements are installed here.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master(job.master)
        .appName(f"batch-{job.model}-v{job.version}")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark, True


def read(spark: SparkSession, job: Job) -> DataFrame:
    """The input as Spark sees it: Parquet with its own types, CSV as text (converted by the plan)."""
    try:
        # Splits of at most a task's share of the bytes: the cores read in parallel, with no shuffle to
        # spread the rows (Spark's 128 MiB default reads a 100 MiB file as one task). Parquet splits only
        # between row groups, so a file of fewer groups than tasks is still spread by `_inputs`.
        fs, where = _fs(spark, job.input)
        size = int(fs.getContentSummary(where).getLength())
        share = max(MIN_SPLIT_BYTES, size // (TASKS_PER_CORE * spark.sparkContext.defaultParallelism))
        spark.conf.set("spark.sql.files.maxPartitionBytes", str(share))
        if job.input_format == "csv":
            return spark.read.option("header", True).option("mode", "FAILFAST").csv(job.input)
        return spark.read.parquet(job.input)
    except SPARK_ERRORS as exc:
        raise BatchFailed(f"--input: cannot read {job.input}: {spark_message(exc)[0]}") from None


def _fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """Hadoop's file system and path for any location Spark writes (local, HDFS, S3...)."""
    jvm = spark._jvm  # Spark's own way to Hadoop's FileSystem.
    assert jvm is not None
    where = jvm.org.apache.hadoop.fs.Path(path)
    return where.getFileSystem(spark._jsc.hadoopConfiguration()), where


def qualified(spark: SparkSession, path: str) -> str:
    """`path` as Hadoop resolves it on the driver: a scheme, and absolute (`file:/work/out` for `out`)."""
    fs, where = _fs(spark, path)
    return str(fs.makeQualified(where).toString())


def exists(spark: SparkSession, path: str) -> bool:
    """Whether anything is at `path`."""
    fs, where = _fs(spark, path)
    return bool(fs.exists(where))


def remove(spark: SparkSession, path: str) -> None:
    """Delete `path` and what it holds, if there."""
    fs, where = _fs(spark, path)
    fs.delete(where, True)


def move_into_place(spark: SparkSession, staging: str, output: str, *, overwrite: bool) -> None:
    """Rename the finished output to its name; an older one (with `--overwrite`) goes only after."""
    fs, destination = _fs(spark, output)
    _, source = _fs(spark, staging)
    replaced = None
    if fs.exists(destination):
        if not overwrite:
            raise BatchFailed(f"--output: {output} appeared while scoring; the result is not moved there")
        _, replaced = _fs(spark, f"{output}.replaced-{uuid.uuid4().hex[:8]}")
        fs.rename(destination, replaced)
    if not fs.rename(source, destination):
        if replaced is not None:
            fs.rename(replaced, destination)
        raise BatchFailed(f"--output: cannot move the result into {output}", status=1)
    if replaced is not None:
        fs.delete(replaced, True)


def open_log(url: str) -> Engine:
    """The prediction log, migrated; `BatchFailed` before any scoring if it cannot be reached."""
    try:
        engine = make_engine(url)
        migrate(engine)
    except LogStoreError as exc:
        raise BatchFailed(f"--log-store: {exc}") from None
    return engine


def _inputs(
    spark: SparkSession, job: Job, signature: ModelSignature, source: DataFrame
) -> tuple[Plan, DataFrame, st.StructType]:
    """The id and the model's inputs per row, spread over the cores, and the answer's Spark type."""
    assert signature.inputs is not None and signature.outputs is not None
    try:
        columns = plan(source.schema, signature.inputs, signature.outputs)
    except ColumnMismatch as exc:
        raise BatchFailed(f"--input: {exc}") from None
    leave_out = {columns.id_column} | (set() if job.params.get("explain", True) else {"contributions"})
    result = result_type(signature.outputs, leave_out=leave_out, reasons=bool(job.params.get("reasons")))
    inputs = source.select(columns.identifier, *columns.features)
    # A file of few row groups reads as few tasks (some of them empty) and leaves cores idle; spreading
    # its rows costs a shuffle, small beside scoring them (a 200,000-row file otherwise ran on one core).
    tasks = TASKS_PER_CORE * spark.sparkContext.defaultParallelism
    if inputs.rdd.getNumPartitions() < tasks:
        inputs = inputs.repartition(tasks)
    return columns, inputs, result


def scored_frame(
    spark: SparkSession, job: Job, columns: Plan, inputs: DataFrame, result: st.StructType
) -> DataFrame:
    """The id, the model's inputs and the answer's struct per row (lazy: nothing runs yet)."""
    if job.scorer == "arrow":
        cloudpickle.register_pickle_by_value(arrow)  # The executors need only the model's requirements.
        score = arrow.scorer(
            job.uri, job.params, to_arrow_type(result), SCORED,
            tracking=mlflow.get_tracking_uri(), registry=mlflow.get_registry_uri(),
        )  # fmt: skip
        schema = st.StructType([*inputs.schema.fields, st.StructField(SCORED, result)])
        return inputs.mapInArrow(score, schema)
    try:
        udf = mlflow.pyfunc.spark_udf(
            spark, job.uri, result_type=result, params=job.params, env_manager=job.env_manager
        )
    except MlflowException as exc:
        raise BatchFailed(f"--model: {job.uri}: {exc.message}") from None
    names = [name for name in inputs.columns if name != columns.id_column]
    return inputs.withColumn(SCORED, udf(sf.struct(*[sf.col(f"`{n}`") for n in names])))


def constants(job: Job, started: datetime) -> dict[str, Any]:
    """The columns every output row ends with: which model answered, and when the job started."""
    return {"model_name": job.model, "model_version": job.version, "scored_at": started}


def _literals(fixed: dict[str, Any]) -> list[Column]:
    return [sf.lit(value).alias(name) for name, value in fixed.items()]


def written_by_tasks(
    spark: SparkSession,
    job: Job,
    columns: Plan,
    inputs: DataFrame,
    result: st.StructType,
    *,
    folder: str,
    started: datetime,
) -> int:
    """Score on the Arrow path, each task writing its own Parquet file into `folder`; the rows written."""
    fixed = constants(job, started)
    # The constants' types as Spark's own writer gives them, so both writers write one schema.
    literal_types = spark.range(0).select(*_literals(fixed)).schema.fields
    schema = st.StructType([inputs.schema[columns.id_column], *result.fields, *literal_types])
    cloudpickle.register_pickle_by_value(arrow)
    write = arrow.writer(
        job.uri, job.params, to_arrow_type(result), to_arrow_schema(schema, timezone="UTC"), folder=folder,
        id_column=columns.id_column, constants=fixed,
        tracking=mlflow.get_tracking_uri(), registry=mlflow.get_registry_uri(),
    )  # fmt: skip
    done = inputs.mapInArrow(write, "part int, rows long").collect()
    rows = sum(int(row["rows"]) for row in done)
    if rows == 0:  # No task wrote a file: an empty one keeps the schema readable.
        spark.createDataFrame([], schema).write.mode("append").parquet(folder)
    else:
        arrow.mark_done(folder)
    return rows


def _log_rows(scored: DataFrame) -> Iterator[dict[str, Any]]:
    names = [c for c in scored.columns if c != SCORED]
    flat = scored.select(*[sf.col(f"`{n}`") for n in names], f"{SCORED}.*")
    for row in flat.toLocalIterator(prefetchPartitions=True):
        yield row.asDict(recursive=True)


def run(job: Job, signature: ModelSignature, *, say: Callable[[str], None]) -> int:
    """Score `job.input` into `job.output`; 0, or `BatchFailed` naming what stopped it."""
    engine = open_log(job.log_store) if job.log_store else None
    spark, ours = session(job)
    staging = f"{job.output}.incomplete-{uuid.uuid4().hex[:8]}"
    try:
        if not job.overwrite and exists(spark, job.output):
            raise BatchFailed(f"--output: {job.output} already exists; remove it or pass --overwrite")
        source = read(spark, job)
        started = datetime.now(UTC)
        # Without a log to fill, the Arrow path's tasks write the output themselves where pyarrow reaches it.
        folder = qualified(spark, staging)  # Executors do not share the driver's working directory.
        by_tasks = job.scorer == "arrow" and engine is None and arrow.can_write(folder)
        columns, inputs, result = _inputs(spark, job, signature, source)
        scored = None if by_tasks else scored_frame(spark, job, columns, inputs, result)
        say(
            f"scoring {job.input} with {job.uri} ({job.model}{job.target}) on {spark.sparkContext.master}"
            + (f"; not sent to the model: {columns.left_aside}" if columns.left_aside else "")
        )
        with mlflow_run(job) as run_id:
            clock = time.perf_counter()
            if engine is not None and scored is not None:
                scored = scored.persist()  # Scored once: for the output, then for the log.
            try:
                logged = None
                if scored is None:
                    rows = written_by_tasks(
                        spark, job, columns, inputs, result, folder=folder, started=started
                    )
                    seconds = time.perf_counter() - clock
                else:
                    output = scored.select(
                        sf.col(f"`{columns.id_column}`"), f"{SCORED}.*", *_literals(constants(job, started))
                    )
                    output.write.parquet(staging)
                    rows = spark.read.parquet(literal(staging)).count()
                    seconds = time.perf_counter() - clock
                    if engine is not None:
                        logged = _append(
                            engine, job, columns, scored, started=started, seconds=seconds, rows=rows, say=say
                        )
                move_into_place(spark, staging, job.output, overwrite=job.overwrite)
            except SPARK_ERRORS as exc:
                message, status = spark_message(exc)
                raise BatchFailed(message, status) from None
            finally:
                if engine is not None and scored is not None:
                    scored.unpersist()
                remove(spark, staging)
            _record(job, spark, rows=rows, seconds=seconds, logged=logged)
        say(
            f"{rows} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s) -> {job.output}; "
            f"MLflow run {run_id}" + (f"; logged as request {logged}" if logged else "")
        )
        return 0
    finally:
        if ours:
            spark.stop()


def _append(
    engine: Engine,
    job: Job,
    columns: Plan,
    scored: DataFrame,
    *,
    started: datetime,
    seconds: float,
    rows: int,
    say: Callable[[str], None],
) -> uuid.UUID:
    request_id = uuid.uuid4()
    request = batch_request(
        request_id,
        started=started,
        model_name=job.model,
        model_version=job.version,
        target=f"models:/{job.model}{job.target}",
        seconds=seconds,
        rows=rows,
    )
    shown = [0]

    def progress(done: int) -> None:
        if done - shown[0] >= rows / 10 or done == rows:  # About ten lines, whatever the size.
            shown[0] = done
            say(f"log: {done}/{rows} rows")

    try:
        append_batch(
            engine,
            _log_rows(scored),
            request=request,
            id_column=columns.id_column,
            inputs=[c for c in scored.columns if c not in (SCORED, columns.id_column)],
            hmac_key=LogStoreSettings().hmac_key,
            progress=progress,
        )
    except LogStoreError as exc:
        raise BatchFailed(f"--log-store: {exc}; nothing of this batch is in the log", status=1) from None
    return request_id


def _record(job: Job, spark: SparkSession, *, rows: int, seconds: float, logged: uuid.UUID | None) -> None:
    size, digest = input_digest(job.input)
    mlflow.log_params(
        {
            "model_name": job.model,
            "model_version": job.version,
            "model_uri": job.uri,
            "model_target": job.target,
            "input": job.input,
            "input_format": job.input_format,
            "output": job.output,
            "spark_master": spark.sparkContext.master,
            "env_manager": job.env_manager,
            **{f"param_{key}": value for key, value in job.params.items()},
        }
    )
    if digest is not None:
        mlflow.set_tag("input_sha256", digest)
    if size is not None:
        mlflow.log_metric("input_bytes", size)
    if logged is not None:
        mlflow.set_tag("log_request_id", str(logged))
    mlflow.log_metrics({"rows": rows, "seconds": seconds, "rows_per_second": rows / max(seconds, 1e-9)})
