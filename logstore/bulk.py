"""Many log rows into PostgreSQL with COPY: the writer's large batches, at half an INSERT's cost.

A batch of INSERTs makes the server parse one statement per row; COPY streams the rows. On the
machine the benchmark runs on, 1,000 rows with their inputs and contributions take about 60 ms
instead of 110 ms of the database's time, time it would otherwise take from the model server.
COPY cannot skip rows already stored, so a replayed batch (a crash between writing a spool segment
and deleting it) fails it with a unique violation; the caller then inserts it skipping those rows.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg2
from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

from logstore.database import json_text

JSON_COLUMNS = {"input", "contributions", "unseen_categories", "reasons"}
NUMBER_COLUMNS = {"score", "threshold", "base_value", "total_ms", "upstream_ms", "queue_ms", "latency_ms"}
# A request's rows share its id; a model's rows share a few labels (a bool would collide with 0 and 1).
REPEATED_COLUMNS = {"request_id", "prediction", "model_name"}
# COPY's text format: these characters are written as backslash escapes; NULL is \N.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _document(value: Any) -> str:
    if value is None:
        return "\\N"
    text = json_text(value)  # As the engine writes JSON columns for INSERT.
    # JSON text holds no raw tab, newline or carriage return (it escapes them): only backslashes double.
    return text.replace("\\", "\\\\") if "\\" in text else text


def _value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, float):  # repr: every digit; PostgreSQL reads nan and inf.
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | uuid.UUID):
        return str(value)
    text = str(value)
    # isprintable is false for tab, newline and carriage return: a C scan spares most texts the translate.
    return text if text.isprintable() and "\\" not in text else text.translate(_ESCAPES)


def _field(name: str, values: list[Any]) -> list[str]:
    """One column's fields: documents as JSON, numbers by repr, a repeated value written once."""
    if name in JSON_COLUMNS:
        return list(map(_document, values))
    if name in NUMBER_COLUMNS:
        return [repr(value) if type(value) is float else _value(value) for value in values]
    if name in REPEATED_COLUMNS:
        written: dict[Any, str] = {}
        return [written.get(value) or written.setdefault(value, _value(value)) for value in values]
    return list(map(_value, values))


def copy_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows in COPY's text format, one line each, their fields in `columns` order."""
    fields = [_field(name, [row.get(name) for row in rows]) for name in columns]  # Column by column.
    return "".join(["\t".join(line) + "\n" for line in zip(*fields, strict=True)])


def copy_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """COPY the rows in the connection's transaction; SQLAlchemy's error classes on failure."""
    columns = [column.name for column in table.columns]
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    text = copy_text(columns, rows)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(statement, io.StringIO(text))
    except psycopg2.Error as exc:
        # The writer tells an outage from refused content by SQLAlchemy's error classes, as for INSERT.
        raise DBAPIError.instance(statement, None, exc, psycopg2.Error, dialect=connection.dialect) from exc
    finally:
        cursor.close()
