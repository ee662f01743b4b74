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


def scorer(
    uri: str, params: dict[str, Any], result: pa.StructType, column: str, *, tracking: str, registry: str
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function `mapInArrow` runs on each task: the input batch, plus the answer as `column`.

    The executor loads the model itself, from the driver's tracking server and registry (`tracking`,
    `registry`): not from the driver's memory.
    """

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        model = _load(uri, tracking, registry)
        python_model = model.unwrap_python_model()
        columnar = _columnar(python_model)
        features = list(getattr(python_model, "features", []))
        for batch in batches:
            frame = batch.to_pandas()
            if columnar is not None:
                answer = _struct(columnar(frame, params), features, result)
            else:
                predicted = pd.DataFrame(model.predict(frame, params=params))
                answer = pa.StructArray.from_arrays(
                    [pa.array(predicted[field.name].tolist(), field.type) for field in result],
                    fields=list(result),
                )
            yield pa.RecordBatch.from_arrays([*batch.columns, answer], [*batch.schema.names, column])

    return score
