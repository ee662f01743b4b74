"""Import observed outcomes from a CSV file into the log store, all rows or none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError
from sqlalchemy import Engine

from logstore.errors import LogStoreError
from logstore.feedback import Feedback, record
from monitoring.errors import MonitoringError
from registry_scripts.cli import problems

COLUMNS = {"request_id", "row", "entity_id", "label", "observed_at"}


def read(path: Path) -> list[Feedback]:
    """Outcomes from a CSV of `label` and `request_id` (with `row`) or `entity_id`; errors name the line."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise MonitoringError(f"--csv: cannot read {path}: {exc}") from exc
    unknown = sorted(set(frame.columns) - COLUMNS)
    if unknown:
        raise MonitoringError(f"--csv: {path}: unknown column(s) {unknown}; expected {sorted(COLUMNS)}")
    if "label" not in frame.columns:
        raise MonitoringError(f"--csv: {path} has no label column")
    outcomes = []
    for index, row in enumerate(frame.to_dict(orient="records")):
        fields: dict[str, Any] = {key: value for key, value in row.items() if value != ""}
        try:
            outcomes.append(Feedback.model_validate(fields))
        except ValidationError as exc:
            raise MonitoringError(f"--csv: {path} line {index + 2}: {problems(exc, whole='row')}") from exc
    if not outcomes:
        raise MonitoringError(f"--csv: {path} holds no outcomes")
    return outcomes


def store(
    engine: Engine, path: Path, *, model: str, labels: tuple[str, str], hmac_key: bytes | None
) -> list[dict[str, Any]]:
    """Check every outcome of the file against the log, then store them in one transaction."""
    outcomes = read(path)
    try:
        return record(
            engine, outcomes=outcomes, model_name=model, labels=labels, hmac_key=hmac_key, source="csv",
            positions=[f"{path} line {index + 2}" for index in range(len(outcomes))],
        )  # fmt: skip
    except LogStoreError as exc:
        raise MonitoringError(f"--csv: {exc.message}") from exc
