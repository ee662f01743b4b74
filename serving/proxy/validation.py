"""Check a JSON scoring request against the model's signature before MLflow sees it.

MLflow's scoring server converts what it is given: any string becomes a boolean, an integer past
the column's range wraps around, NaN reaches the model. The proxy refuses such input instead, with
a 400 that names the field, so nothing the model did not mean to score is answered or logged.

Each signature type has one rule (`RULES`); the fast column check and the per-value messages both
come from it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from logstore.formats import FORMATS, FormatError, Rows, kind, names, read
from serving.errors import BadRequest

JSON_TYPE, CSV_TYPE, PARQUET_TYPE = "application/json", "text/csv", "application/vnd.apache.parquet"
MAX_PROBLEMS = 5
Column = dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """What a signature type accepts: JSON types, null, a range, finiteness, NUL characters."""

    name: str  # The signature's type.
    words: str  # "must be {words}"
    types: frozenset[type]
    nullable: bool = False  # MLflow and the model read null there as a missing value.
    bounds: tuple[int, int] | None = None
    finite: bool = False
    no_nul: bool = False

    def problem(self, value: Any, *, required: bool = True) -> str | None:
        """What is wrong with one value, or None."""
        if value is None:
            # MLflow cannot put null in an integer or boolean column, even an optional one.
            leave_out = "" if required else "leave the column out or "
            return None if self.nullable else f"is null; {leave_out}send {self.words}"
        if type(value) not in self.types:  # Exact types: JSON's true is not an integer here.
            return f"must be {self.words}, not {kind(value)}"
        if self.bounds and not self.bounds[0] <= value <= self.bounds[1]:
            return f"is outside the {self.name} range [{self.bounds[0]}, {self.bounds[1]}]"
        if self.finite and not _finite(value):
            return "must be a finite number"
        return "contains a NUL character" if self.no_nul and "\x00" in value else None

    def clean(self, values: Sequence[Any]) -> bool:
        """Whether no value of a column has a problem, found with C-speed passes over the column."""
        types = set(map(type, values))
        if type(None) in types:
            if not self.nullable:
                return False
            types.discard(type(None))
            values = [value for value in values if value is not None]
        if not types <= self.types:
            return False
        if self.bounds and values and not (self.bounds[0] <= min(values) and max(values) <= self.bounds[1]):
            return False
        if self.finite and not all(map(_finite, values)):
            return False
        return not (self.no_nul and "\x00" in "".join(values))


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # An integer past the largest double.
        return False


RULES = {
    rule.name: rule
    for rule in (
        Rule("long", "an integer", frozenset({int}), bounds=(-(2**63), 2**63 - 1)),
        Rule("integer", "an integer", frozenset({int}), bounds=(-(2**31), 2**31 - 1)),
        Rule("double", "a number", frozenset({int, float}), nullable=True, finite=True),
        Rule("float", "a number", frozenset({int, float}), nullable=True, finite=True),
        Rule("string", "a string", frozenset({str}), nullable=True, no_nul=True),
        Rule("boolean", "true or false", frozenset({bool})),
    )
}


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
        raise BadRequest(f"body: must be a JSON object with one of {', '.join(FORMATS)}, not {kind(payload)}")
    return payload


def _problem(value: Any, column: Column) -> str | None:
    rule = RULES.get(column["type"])
    return rule.problem(value, required=column.get("required", True)) if rule else None


def _by_column(rows: Rows) -> dict[str, Sequence[Any]] | None:
    """A checked body's values column by column; None when its rows do not all hold the same columns."""
    if rows.key == "dataframe_split":
        return dict(zip(rows.value["columns"], zip(*rows.value["data"], strict=True), strict=True))
    if isinstance(rows.value, dict):
        return rows.value
    first = rows.value[0].keys()
    if any(row.keys() != first for row in rows.value):
        return None
    return {name: list(map(itemgetter(name), rows.value)) for name in first}


def _clean(values: Sequence[Any], column: Column) -> bool:
    rule = RULES.get(column["type"])
    return rule.clean(values) if rule else True


def check_rows(payload: dict[str, Any], inputs: Sequence[Column]) -> int:
    """Raise `BadRequest` naming every misfit field (the first few); the number of rows otherwise."""
    try:
        rows = read(payload)
    except FormatError as exc:
        raise BadRequest(exc.message) from exc
    if rows.count == 0:
        raise BadRequest(f"{rows.key}: holds no rows")
    columns = {column["name"]: column for column in inputs if "name" in column}
    required = [name for name, column in columns.items() if column.get("required", True)]
    # Column by column first: a large clean batch is checked without a Python step per field.
    by_column = _by_column(rows)
    if (
        by_column is not None
        and set(required) <= set(by_column) <= set(columns)
        and all(_clean(values, columns[name]) for name, values in by_column.items())
    ):
        return rows.count
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
    return rows.count


def check_params(payload: dict[str, Any], params: Sequence[dict[str, Any]]) -> None:
    """Raise `BadRequest` unless `params` names only declared params, each of its declared type."""
    given = payload.get("params")
    if given is None:
        return
    if not isinstance(given, dict):
        raise BadRequest(f"params: must be an object, not {kind(given)}")
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
