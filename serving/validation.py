"""Check a JSON scoring request against the model's signature before MLflow sees it.

MLflow's scoring server converts what it is given: any string becomes a boolean, an integer past
the column's range wraps around, NaN reaches the model. The proxy refuses such input instead, with
a 400 that names the field, so nothing the model did not mean to score is answered or logged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any

from serving.errors import BadRequest

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
JSON_TYPE, CSV_TYPE, PARQUET_TYPE = "application/json", "text/csv", "application/vnd.apache.parquet"
MAX_PROBLEMS = 5
MAX_NAMES, MAX_NAME_CHARS = 5, 40  # An error names a few offending keys, each cut short, and counts the rest.
_RANGES = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}
_KINDS = {
    "long": "an integer",
    "integer": "an integer",
    "double": "a number",
    "float": "a number",
    "boolean": "true or false",
    "string": "a string",
}
Column = dict[str, Any]


def media_type(content_type: str) -> str:
    """The request's media type; 415 unless MLflow reads it, 415 for a JSON charset other than UTF-8."""
    kind, _, rest = content_type.partition(";")
    kind = kind.strip().lower()
    if kind not in (JSON_TYPE, CSV_TYPE, PARQUET_TYPE):
        raise BadRequest(
            f"Content-Type: {kind or 'none'} is not accepted; send {JSON_TYPE} or {CSV_TYPE}",
            error_code="UNSUPPORTED_MEDIA_TYPE", status_code=415,
        )  # fmt: skip
    for part in rest.split(";"):
        name, _, value = part.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise BadRequest(
                f"Content-Type: charset {charset or 'none'} is not accepted; JSON must be UTF-8",
                error_code="UNSUPPORTED_MEDIA_TYPE", status_code=415,
            )  # fmt: skip
    return kind


def names(found: set[str] | list[str]) -> str:
    """A bounded list of offending names: the first few, each cut short, and a count of the others."""
    ordered = sorted(found)
    shown = [name if len(name) <= MAX_NAME_CHARS else name[:MAX_NAME_CHARS] + "..." for name in ordered]
    text = repr(shown[:MAX_NAMES])
    return text if len(ordered) <= MAX_NAMES else f"{text} and {len(ordered) - MAX_NAMES} more"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON; send null for a missing value")


def parse(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body."""
    if not body.strip():
        raise BadRequest('body: is empty; send a JSON object such as {"dataframe_split": ...}')
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise BadRequest("body: is not UTF-8") from exc
    except RecursionError as exc:
        raise BadRequest("body: is nested too deeply to be a scoring request") from exc
    except ValueError as exc:
        raise BadRequest(f"body: is not valid JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise BadRequest(
            f"body: must be a JSON object with one of {', '.join(FORMATS)}, not {_kind(payload)}"
        )
    return payload


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _split_rows(value: Any) -> tuple[Iterator[tuple[int, dict[str, Any]]], int]:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise BadRequest("dataframe_split: must be an object with columns and data lists")
    if extra := set(value) - {"columns", "data", "index"}:
        raise BadRequest(f"dataframe_split: unknown key(s) {names(extra)}")
    columns, data = value.get("columns"), value["data"]
    if not isinstance(columns, list) or not all(isinstance(name, str) for name in columns):
        raise BadRequest("dataframe_split.columns: must be a list of column names")
    if len(set(columns)) != len(columns):
        raise BadRequest("dataframe_split.columns: names a column twice")
    for index, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BadRequest(
                f"dataframe_split.data[{index}]: must be a list of {len(columns)} values, one per column"
            )
    return ((i, dict(zip(columns, row, strict=True))) for i, row in enumerate(data)), len(data)


def _column_rows(key: str, value: dict[str, Any]) -> tuple[Iterator[tuple[int, dict[str, Any]]], int]:
    lists = list(value.values())
    if not all(isinstance(column, list) for column in lists) or len({len(c) for c in lists}) > 1:
        raise BadRequest(f"{key}: as columns, every column must be a list of the same length")
    count = len(lists[0]) if lists else 0
    return ((i, {name: value[name][i] for name in value}) for i in range(count)), count


def _records(payload: dict[str, Any]) -> tuple[str, Iterator[tuple[int, dict[str, Any]]], int]:
    """Which format the body uses, its rows as (index, {column: value}), and the row count."""
    if unknown := set(payload) - {*FORMATS, "params"}:
        raise BadRequest(
            f"body: unknown key(s) {names(unknown)}; expected one of {', '.join(FORMATS)} and params"
        )
    given = [key for key in FORMATS if key in payload]
    if len(given) != 1:
        raise BadRequest(f"body: must hold exactly one of {', '.join(FORMATS)}; it holds {given or 'none'}")
    key = given[0]
    value = payload[key]
    if key == "dataframe_split":
        return key, *_split_rows(value)
    if isinstance(value, dict) and key in ("instances", "inputs"):
        return key, *_column_rows(key, value)
    if not isinstance(value, list):
        raise BadRequest(f"{key}: must be a list of row objects")
    for index, row in enumerate(value):
        if not isinstance(row, dict):
            raise BadRequest(f"{key}[{index}]: must be an object of column: value")
    return key, enumerate(value), len(value)


def _integer(value: Any, kind: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer, not {_kind(value)}"
    low, high = _RANGES[kind]
    return None if low <= value <= high else f"is outside the {kind} range [{low}, {high}]"


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # An integer past the largest double.
        return False


def _number(value: Any, _: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number, not {_kind(value)}"
    return None if _finite(value) else "must be a finite number"


def _string(value: Any, _: str) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, not {_kind(value)}"
    return "contains a NUL character" if "\x00" in value else None


def _boolean(value: Any, _: str) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {_kind(value)}"


_CHECKS = {"long": _integer, "integer": _integer, "double": _number, "float": _number,
           "string": _string, "boolean": _boolean}  # fmt: skip
_NULLABLE = ("double", "float", "string")  # MLflow and the model read null there as a missing value.


def _problem(value: Any, column: Column) -> str | None:
    """What is wrong with one value of a column, or None."""
    kind = column["type"]
    if value is None:
        if kind in _NULLABLE:
            return None
        # MLflow cannot put null in an integer or boolean column, even an optional one.
        leave_out = "" if column.get("required", True) else "leave the column out or "
        return f"is null; {leave_out}send {_KINDS.get(kind, 'a value')}"
    check = _CHECKS.get(kind)
    return check(value, kind) if check else None


def _by_column(key: str, value: Any) -> dict[str, Sequence[Any]] | None:
    """A checked body's values column by column; None when its rows do not all hold the same columns."""
    if key == "dataframe_split":
        return dict(zip(value["columns"], zip(*value["data"], strict=True), strict=True))
    if isinstance(value, dict):
        return value
    first = value[0].keys()
    if any(row.keys() != first for row in value):
        return None
    return {name: list(map(itemgetter(name), value)) for name in first}


def _clean(values: Sequence[Any], column: Column) -> bool:
    """Whether no value of one column has a problem, found with C-speed passes over the column."""
    kind = column["type"]
    types = set(map(type, values))
    if type(None) in types:
        if kind not in _NULLABLE:
            return False
        types.discard(type(None))
        values = [value for value in values if value is not None]
    if kind in _RANGES:
        low, high = _RANGES[kind]
        return types <= {int} and (not values or (low <= min(values) and max(values) <= high))
    if kind in ("double", "float"):
        return types <= {int, float} and all(map(_finite, values))
    if kind == "string":
        return types <= {str} and "\x00" not in "".join(values)
    if kind == "boolean":
        return types <= {bool}
    return True


def check_rows(payload: dict[str, Any], inputs: Sequence[Column]) -> int:
    """Raise `BadRequest` naming every misfit field (the first few); the number of rows otherwise."""
    key, rows, count = _records(payload)
    if count == 0:
        raise BadRequest(f"{key}: holds no rows")
    columns = {column["name"]: column for column in inputs if "name" in column}
    required = [name for name, column in columns.items() if column.get("required", True)]
    # Column by column first: a large clean batch is checked without a Python step per field.
    by_column = _by_column(key, payload[key])
    if (
        by_column is not None
        and set(required) <= set(by_column) <= set(columns)
        and all(_clean(values, columns[name]) for name, values in by_column.items())
    ):
        return count
    # Row by row, to name the first problems in the order a client reads its rows.
    problems: list[str] = []
    for index, row in rows:
        missing = [name for name in required if name not in row]
        extra = set(row) - set(columns)
        if missing:
            problems.append(f"row {index}: missing column(s) {names(missing)}")
        if extra:
            problems.append(f"row {index}: unknown column(s) {names(extra)}")
        for name, value in row.items():
            if name in columns and (problem := _problem(value, columns[name])):
                problems.append(f"row {index}, column {name!r}: {problem}")
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise BadRequest("; ".join(problems[:MAX_PROBLEMS]))
    return count


def check_params(payload: dict[str, Any], params: Sequence[dict[str, Any]]) -> None:
    """Raise `BadRequest` unless `params` names only declared params, each of its declared type."""
    given = payload.get("params")
    if given is None:
        return
    if not isinstance(given, dict):
        raise BadRequest(f"params: must be an object, not {_kind(given)}")
    declared = {param["name"]: param for param in params}
    unknown = set(given) - set(declared)
    if unknown:
        raise BadRequest(f"params: unknown name(s) {names(unknown)}; the model takes {sorted(declared)}")
    for name, value in given.items():
        if value is None:
            raise BadRequest(f"params.{name}: is null; leave it out to use the default")
        spec = {"type": declared[name]["type"], "required": True}
        if problem := _problem(value, spec):
            raise BadRequest(f"params.{name}: {problem}")
