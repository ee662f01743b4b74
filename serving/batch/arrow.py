"""The Arrow path: each Spark task loads the model once and answers whole Arrow batches, a column at a time.

`mapInArrow` hands a task its rows as Arrow record batches; the pyfunc's `columns` scores a batch and
gives the contributions as two arrays (feature indices and values), so the answer's struct is built
from columns: the contributions map from one offsets array, one keys array and one values array,
never a Python call per value (`spark_udf` turns every answer into Spark rows one value at a time).
A model whose pyfunc has no `columns` (a version trained before it) is answered by its `predict`,
converted by Arrow. Each Python worker loads the model once, from the registry. This module imports
nothing of ours: it is shipped to the executors by value, so they need only the model's requirements.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from mlflow.pyfunc import PyFuncModel

# Spark runs a task's function in a Python worker it reuses for later tasks, but rebuilds this
# module (shipped by value) for each: the models it loaded live in a module it does not rebuild.
CACHE = "_serving_batch_models"


def _load(uri: str, tracking: str, registry: str) -> PyFuncModel:
    """The model, loaded once per Python worker (a load costs seconds, a task a fraction of that)."""
    cache = sys.modules.setdefault(CACHE, types.ModuleType(CACHE))
    models: dict[tuple[str, str, str], PyFuncModel] = cache.__dict__.setdefault("models", {})
    key = (uri, tracking, registry)
    if key not in models:
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry)
        models[key] = mlflow.pyfunc.load_model(uri)
    return models[key]


def _columnar(python_model: object) -> Callable[..., dict[str, Any]] | None:
    """The pyfunc's `columns`, or None for a version trained before it had one."""
    found: Callable[..., dict[str, Any]] | None = getattr(python_model, "columns", None)
    return found


def _struct(answer: dict[str, Any], features: list[str], wanted: pa.StructType) -> pa.StructArray:
    """The answer's columns as the struct Spark expects, in its field order."""
    rows = len(answer["score"])
    arrays = []
    for field in wanted:
        if field.name == "contributions":
            kept, values = answer["contributions"]
            width = values.shape[1]
            offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
            keys = pa.array(features, pa.string()).take(pa.array(np.ascontiguousarray(kept).ravel()))
            arrays.append(pa.MapArray.from_arrays(offsets, keys, pa.array(values.ravel(), pa.float64())))
        else:
            arrays.append(pa.array(answer[field.name], field.type))
    return pa.StructArray.from_arrays(arrays, fields=list(wanted))


def _answers(
    uri: str, params: dict[str, Any], result: pa.StructType, tracking: str, registry: str
) -> Callable[[pa.RecordBatch], pa.StructArray]:
    """A function from an input batch to its answers' struct, with the model loaded in this worker."""
    model = _load(uri, tracking, registry)
    python_model = model.unwrap_python_model()
    columnar = _columnar(python_model)
    features = list(getattr(python_model, "features", []))

    def answer(batch: pa.RecordBatch) -> pa.StructArray:
        frame = batch.to_pandas()
        if columnar is not None:
            return _struct(columnar(frame, params), features, result)
        predicted = pd.DataFrame(model.predict(frame, params=params))
        return pa.StructArray.from_arrays(
            [pa.array(predicted[field.name].tolist(), field.type) for field in result], fields=list(result)
        )

    return answer


def can_write(location: str) -> bool:
    """Whether pyarrow reaches `location` (local, S3, GCS, HDFS...) as the executors would."""
    try:
        pafs.FileSystem.from_uri(location)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError):
        return False
    return True


def mark_done(folder: str) -> None:
    """Leave the empty `_SUCCESS` file that Spark's own writer leaves in a finished output."""
    fs, base = pafs.FileSystem.from_uri(folder)
    fs.open_output_stream(f"{base}/_SUCCESS").close()


def writer(
    uri: str,
    params: dict[str, Any],
    result: pa.StructType,
    schema: pa.Schema,
    *,
    folder: str,
    id_column: str,
    constants: dict[str, Any],
    tracking: str,
    registry: str,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function `mapInArrow` runs on each task: score its rows and write them as one Parquet file.

    The file (`schema`: the id, the answer's fields, then `constants`) is named by the task's partition,
    written aside and moved into `folder` when whole, so a retried task replaces its own file; the task
    answers one row, its partition and row count. Spark converts nothing: its writer would turn every
    contribution into a JVM row value before writing it.
    """

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext  # On the executor, inside a task.

        answer = _answers(uri, params, result, tracking, registry)
        fs, base = pafs.FileSystem.from_uri(folder)
        fs.create_dir(base, recursive=True)  # Spark's writer makes it; pyarrow's leaves it to us.
        context = TaskContext.get()
        part = context.partitionId() if context is not None else 0
        path = f"{base}/part-{part:05d}.parquet"
        aside = f"{base}/.part-{part:05d}.parquet.incomplete"
        scalars = [pa.scalar(value, schema.field(key).type) for key, value in constants.items()]
        rows, out = 0, None
        try:
            for batch in batches:
                answered = answer(batch)
                size = batch.num_rows
                fixed = [pa.repeat(value, size) for value in scalars]
                table = pa.Table.from_arrays(
                    [batch.column(id_column), *answered.flatten(), *fixed], schema=schema
                )
                out = out or pq.ParquetWriter(aside, schema, filesystem=fs)
                out.write_table(table)
                rows += size
        finally:
            if out is not None:
                out.close()
        if out is not None:
            fs.move(aside, path)
        yield pa.RecordBatch.from_arrays(
            [pa.array([part], pa.int32()), pa.array([rows], pa.int64())], ["part", "rows"]
        )

    return score


def scorer(
    uri: str, params: dict[str, Any], result: pa.StructType, column: str, *, tracking: str, registry: str
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function `mapInArrow` runs on each task: the input batch, plus the answer as `column`.

    The executor loads the model itself, from the driver's tracking server and registry (`tracking`,
    `registry`): not from the driver's memory.
    """

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        answer = _answers(uri, params, result, tracking, registry)
        for batch in batches:
            yield pa.RecordBatch.from_arrays([*batch.columns, answer(batch)], [*batch.schema.names, column])

    return score
