"""Replay one logged decision: re-score its stored input with the version that made it, and compare."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from sqlalchemy import Engine

from logstore import store
from monitoring.errors import MonitoringError

SCORE_TOLERANCE = 1e-9
CONTRIBUTION_TOLERANCE = 1e-8  # Contributions are answered to 8 decimals.


@dataclass(frozen=True)
class Replay:
    """What was logged, what the version answers now, and every difference found."""

    model: str
    version: int
    logged: dict[str, Any]
    replayed: dict[str, Any]
    differences: list[str]


def differences(logged: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    """Each way the replayed answer differs from the logged one: score, decision, contributions, reasons."""
    found = []
    if abs(float(replayed["score"]) - float(logged["score"])) > SCORE_TOLERANCE:
        found.append(f"score: logged {logged['score']!r}, replayed {float(replayed['score'])!r}")
    if str(replayed["prediction"]) != logged["prediction"]:
        found.append(f"decision: logged {logged['prediction']!r}, replayed {replayed['prediction']!r}")
    now = replayed.get("contributions") or {}
    for name, value in (logged.get("contributions") or {}).items():
        if name not in now or abs(float(now[name]) - float(value)) > CONTRIBUTION_TOLERANCE:
            found.append(f"contribution of {name}: logged {value!r}, replayed {now.get(name)!r}")
    before, after = logged.get("reasons"), replayed.get("reasons")
    if before is not None:
        keys = ("code", "feature", "value", "statement")
        was = [tuple(reason[k] for k in keys) for reason in before]
        now_reasons = [tuple(reason[k] for k in keys) for reason in after or []]
        if was != now_reasons:
            found.append(f"reasons: logged {was}, replayed {now_reasons}")
    return found


def replay(engine: Engine, *, request_id: uuid.UUID, row: int) -> Replay:
    """Load the version that answered `request_id`, score the row's stored input with the same params."""
    request = store.get_request(engine, request_id=request_id)
    if request is None:
        raise MonitoringError(f"--request-id: {request_id} is not in the log")
    rows = {item["row_index"]: item for item in request["predictions"]}
    if row not in rows:
        raise MonitoringError(f"--row: request {request_id} has no logged row {row}")
    logged, name, version = rows[row], request["model_name"], request["model_version"]
    if not logged["input"]:
        raise MonitoringError(f"request {request_id} was logged without its input: it cannot be replayed")
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except MlflowException as exc:
        raise MonitoringError(f"model {name!r} version {version} cannot be loaded: {exc.message}") from exc
    # The request's own threshold and as many reasons as were answered: the same question again.
    params: dict[str, Any] = {"threshold": float(logged["threshold"])}
    if logged.get("reasons"):
        params["reasons"] = len(logged["reasons"])
    signature = model.metadata.get_input_schema()  # Its required columns: the id (pseudonymised) stays out.
    columns = (
        [spec.name for spec in signature.inputs if spec.required] if signature else list(logged["input"])
    )
    frame = pd.DataFrame([{name: logged["input"].get(name) for name in columns}])
    try:
        answer = model.predict(frame, params=params)
    except MlflowException as exc:
        raise MonitoringError(f"version {version} refused the stored input: {exc.message}") from exc
    replayed = answer.iloc[0].to_dict() if isinstance(answer, pd.DataFrame) else dict(answer[0])
    return Replay(name, int(version), logged, replayed, differences(logged, replayed))
