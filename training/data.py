"""Load a use case's CSV, check it against its config and describe its features."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from training.config import UseCaseConfig
from training.errors import DataError

ColumnType = Literal["long", "double", "boolean", "string"]


@dataclass(frozen=True)
class Feature:
    """One raw input column as clients send it."""

    name: str
    type: ColumnType
    categorical: bool


@dataclass(frozen=True)
class Dataset:
    """Features, binary target and entity ids of one use case."""

    features: pd.DataFrame
    target: np.ndarray
    ids: pd.Series
    sensitive: pd.DataFrame  # The config's protected attributes, model inputs or not, as in the CSV.
    schema: tuple[Feature, ...]
    positive_label: str
    negative_label: str
    sha256: str
    source: Path

    @property
    def numeric(self) -> list[str]:
        """Columns used as numbers."""
        return [f.name for f in self.schema if not f.categorical]

    @property
    def categorical(self) -> list[str]:
        """Columns one-hot encoded."""
        return [f.name for f in self.schema if f.categorical]

    @property
    def monitored(self) -> tuple[Feature, ...]:
        """Protected attributes the model does not take: clients may send them, for fairness monitoring."""
        inputs = {f.name for f in self.schema}
        return tuple(
            Feature(name=str(c), type=_column_type(self.sensitive[c]), categorical=False)
            for c in self.sensitive.columns
            if c not in inputs
        )


def file_sha256(path: Path) -> str:
    """Content hash that identifies exactly which data a model saw."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _column_type(series: pd.Series) -> ColumnType:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "long"
    if pd.api.types.is_float_dtype(series):
        return "double"
    return "string"


def _require_columns(frame: pd.DataFrame, field: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{field}: column(s) {missing} not in the CSV (has {list(frame.columns)})")


def _sensitive(frame: pd.DataFrame, config: UseCaseConfig) -> pd.DataFrame:
    """The protected attributes' columns, checked: present, not the target or id, numbers where banded."""
    if config.fairness is None:
        return frame.iloc[:, :0]
    for name, attribute in config.fairness.attributes.items():
        where = f"fairness.attributes.{name}"
        if name not in frame.columns:
            raise DataError(f"{where}: column {name!r} is not in the CSV (has {list(frame.columns)})")
        if name in {config.data.target, config.data.id_column}:
            raise DataError(f"{where}: {name!r} is the target or id column, not an attribute of a person")
        if attribute.bands and not pd.api.types.is_numeric_dtype(frame[name]):
            raise DataError(f"{where}.bands: column {name!r} is not numeric, so it cannot be cut into bands")
    return frame[list(config.fairness.attributes)]


def load_dataset(config: UseCaseConfig) -> Dataset:
    """Read the CSV named by the config and validate it."""
    spec = config.data
    if not spec.path.is_file():
        raise DataError(f"data.path: file {spec.path} does not exist")
    try:
        frame = pd.read_csv(spec.path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"data.path: {spec.path} is not a readable CSV: {exc}") from exc
    _require_columns(frame, "data.target", [spec.target])
    _require_columns(frame, "data.id_column", [spec.id_column])
    _require_columns(frame, "data.drop_columns", list(spec.drop_columns))
    _require_columns(frame, "data.categorical_columns", list(spec.categorical_columns))
    _require_columns(frame, "protected", list(config.protected))  # A misspelt name would protect nothing.

    target = frame[spec.target]
    if target.isna().any():
        raise DataError(f"data.target: column {spec.target!r} has {int(target.isna().sum())} missing labels")
    labels = sorted(target.astype(str).unique())
    if len(labels) != 2:
        raise DataError(f"data.target: column {spec.target!r} must have exactly 2 classes, found {labels}")
    if spec.positive_class not in labels:
        raise DataError(
            f"data.positive_class: {spec.positive_class!r} is not a class of {spec.target!r} {labels}"
        )
    ids = frame[spec.id_column]
    if ids.isna().any() or not ids.is_unique:
        raise DataError(f"data.id_column: column {spec.id_column!r} must be unique and never empty")

    excluded = {spec.target, spec.id_column, *spec.drop_columns}
    features = frame[[c for c in frame.columns if c not in excluded]]
    if features.empty or features.shape[1] == 0:
        raise DataError("data: no feature columns left after removing target, id and drop_columns")
    forced = set(spec.categorical_columns)
    schema = tuple(
        Feature(
            name=str(c),
            type=_column_type(features[c]),
            categorical=c in forced or _column_type(features[c]) == "string",
        )
        for c in features.columns
    )
    y = (target.astype(str) == spec.positive_class).to_numpy(dtype=np.int64)
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < 2 * config.search.cv_folds:
        raise DataError(
            f"data.target: only {minority} rows of the rarer class; "
            f"too few for {config.search.cv_folds}-fold CV"
        )
    negative = next(label for label in labels if label != spec.positive_class)
    return Dataset(
        features=features,
        target=y,
        ids=ids,
        sensitive=_sensitive(frame, config),
        schema=schema,
        positive_label=spec.positive_class,
        negative_label=negative,
        sha256=file_sha256(spec.path),
        source=spec.path,
    )
