"""MLflow's JSON scoring formats read into rows: one reader for the proxy's check and the log's writer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
# A message names a few offending keys, each cut short, and counts the others.
MAX_NAMES, MAX_NAME_CHARS = 5, 40
Row = dict[str, Any]


class FormatError(ValueError):
    """The body is not one of MLflow's input formats; the message names the field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def names(found: set[str] | list[str]) -> str:
    """A bounded list of offending names: the first few, each cut short, and a count of the others."""
    ordered = sorted(found)
    shown = [name if len(name) <= MAX_NAME_CHARS else name[:MAX_NAME_CHARS] + "..." for name in ordered]
    text = repr(shown[:MAX_NAMES])
    return text if len(ordered) <= MAX_NAMES else f"{text} and {len(ordered) - MAX_NAMES} more"


def kind(value: Any) -> str:
    """What a JSON value is, in words."""
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


@dataclass(frozen=True)
class Rows:
    """The rows of a body in one format: the format's key, its value as sent, and the row count."""

    key: str
    value: Any
    count: int

    def __iter__(self) -> Iterator[tuple[int, Row]]:
        """Each row as (index, {column: value})."""
        if self.key == "dataframe_split":
            columns = self.value["columns"]
            return ((i, dict(zip(columns, row, strict=True))) for i, row in enumerate(self.value["data"]))
        if isinstance(self.value, dict):
            return ((i, {name: column[i] for name, column in self.value.items()}) for i in range(self.count))
        return enumerate(self.value)


def _split(value: Any) -> Rows:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise FormatError("dataframe_split: must be an object with columns and data lists")
    if extra := set(value) - {"columns", "data", "index"}:
        raise FormatError(f"dataframe_split: unknown key(s) {names(extra)}")
    columns, data = value.get("columns"), value["data"]
    if not isinstance(columns, list) or not all(isinstance(name, str) for name in columns):
        raise FormatError("dataframe_split.columns: must be a list of column names")
    if len(set(columns)) != len(columns):
        raise FormatError("dataframe_split.columns: names a column twice")
    for index, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise FormatError(
                f"dataframe_split.data[{index}]: must be a list of {len(columns)} values, one per column"
            )
    return Rows("dataframe_split", value, len(data))


def _columns(key: str, value: dict[str, Any]) -> Rows:
    lists = list(value.values())
    if not all(isinstance(column, list) for column in lists) or len({len(c) for c in lists}) > 1:
        raise FormatError(f"{key}: as columns, every column must be a list of the same length")
    return Rows(key, value, len(lists[0]) if lists else 0)


def read(payload: dict[str, Any]) -> Rows:
    """The rows of a JSON scoring body (`params` aside); `FormatError` naming the field otherwise."""
    if unknown := set(payload) - {*FORMATS, "params"}:
        raise FormatError(
            f"body: unknown key(s) {names(unknown)}; expected one of {', '.join(FORMATS)} and params"
        )
    given = [key for key in FORMATS if key in payload]
    if len(given) != 1:
        raise FormatError(f"body: must hold exactly one of {', '.join(FORMATS)}; it holds {given or 'none'}")
    key = given[0]
    value = payload[key]
    if key == "dataframe_split":
        return _split(value)
    if isinstance(value, dict) and key in ("instances", "inputs"):
        return _columns(key, value)
    if not isinstance(value, list):
        raise FormatError(f"{key}: must be a list of row objects")
    for index, row in enumerate(value):
        if not isinstance(row, dict):
            raise FormatError(f"{key}[{index}]: must be an object of column: value")
    return Rows(key, value, len(value))
