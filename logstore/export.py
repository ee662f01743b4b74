"""The log as Parquet, one file a day: a data team reads it with Spark, pandas or DuckDB, not the database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from itertools import groupby
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs
from sqlalchemy import Engine, select

from logstore.errors import StoreConfigError
from logstore.store import latest_outcome
from logstore.tables import inference_outcomes, inference_predictions, inference_requests

CHUNK_ROWS = 5_000
JSON_COLUMNS = ("input", "contributions", "unseen_categories", "reasons")  # Written as JSON text.
SCHEMA = pa.schema(
    [
        ("request_id", pa.string()), ("row_index", pa.int32()), ("received_at", pa.timestamp("us", tz="UTC")),
        ("model_name", pa.string()), ("model_version", pa.int32()), ("endpoint", pa.string()),
        ("key_id", pa.string()), ("entity_id", pa.string()), ("score", pa.float64()),
        ("prediction", pa.string()), ("threshold", pa.float64()), ("base_value", pa.float64()),
        ("input", pa.string()), ("contributions", pa.string()), ("unseen_categories", pa.string()),
        ("reasons", pa.string()), ("label", pa.string()), ("positive", pa.bool_()),
    ]
)  # fmt: skip


def _rows(engine: Engine, since: datetime | None, until: datetime | None) -> Iterator[list[dict[str, Any]]]:
    where = {"request_id": inference_predictions.c.request_id, "row_index": inference_predictions.c.row_index}
    query = (
        select(
            inference_predictions.c.request_id,
            inference_predictions.c.row_index,
            inference_requests.c.received_at,
            inference_requests.c.model_name,
            inference_requests.c.model_version,
            inference_requests.c.endpoint,
            inference_requests.c.key_id,
            inference_predictions.c.entity_id,
            inference_predictions.c.score,
            inference_predictions.c.prediction,
            inference_predictions.c.threshold,
            inference_predictions.c.base_value,
            inference_predictions.c.input,
            inference_predictions.c.contributions,
            inference_predictions.c.unseen_categories,
            inference_predictions.c.reasons,
            latest_outcome(inference_outcomes.c.label, **where).label("label"),
            latest_outcome(inference_outcomes.c.positive, **where).label("positive"),
        )
        .join(inference_requests, inference_requests.c.request_id == inference_predictions.c.request_id)
        .order_by(
            inference_requests.c.received_at,
            inference_predictions.c.request_id,
            inference_predictions.c.row_index,
        )
    )
    if since is not None:
        query = query.where(inference_requests.c.received_at >= since)
    if until is not None:
        query = query.where(inference_requests.c.received_at < until)
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
        for chunk in result.partitions():
            yield [dict(row._mapping) for row in chunk]


def _arrow(row: dict[str, Any]) -> dict[str, Any]:
    row["request_id"] = str(row["request_id"])
    for name in JSON_COLUMNS:
        row[name] = None if row[name] is None else json.dumps(row[name])
    return row


def export(engine: Engine, *, since: datetime | None, until: datetime | None, output: str) -> dict[str, int]:
    """Write the window's predictions (with the request's facts and the latest outcome) one file a day.

    `output` is a folder or a URI pyarrow can write (file://, s3://, gs://, hdfs://): `YYYY-MM-DD.parquet`
    in it for each day with rows. Each file is written under a temporary name and renamed when complete.
    Returns the rows written per day.
    """
    try:
        filesystem, root = (
            fs.FileSystem.from_uri(output) if "://" in output else (fs.LocalFileSystem(), output)
        )
        filesystem.create_dir(root, recursive=True)
    except (pa.ArrowInvalid, OSError) as exc:
        raise StoreConfigError(f"--output: cannot write to {output}: {exc}") from exc
    written: dict[str, int] = {}
    writer: pq.ParquetWriter | None = None
    day = ""

    def close() -> None:
        if writer is not None:
            writer.close()
            filesystem.move(f"{root}/.{day}.parquet.partial", f"{root}/{day}.parquet")

    for chunk in _rows(engine, since, until):
        for today, rows in groupby(chunk, key=lambda row: row["received_at"].date().isoformat()):
            run = [_arrow(row) for row in rows]
            if today != day:
                close()
                day = today
                writer = pq.ParquetWriter(f"{root}/.{day}.parquet.partial", SCHEMA, filesystem=filesystem)
                written[day] = 0
            assert writer is not None
            writer.write_table(pa.Table.from_pylist(run, schema=SCHEMA))
            written[day] += len(run)
    close()
    return written
