"""Observed outcomes: the label that reality gave a logged prediction, months later."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Engine

from logstore import store
from logstore.errors import InvalidOutcome, UnknownPrediction
from logstore.records import pseudonym


class Feedback(BaseModel):
    """One observed label, for a logged row (`request_id` and `row`) or an entity's latest prediction."""

    model_config = ConfigDict(extra="forbid")

    request_id: uuid.UUID | None = Field(default=None, description="the X-Request-ID of the scored request")
    row: int = Field(default=0, ge=0, description="the row of that request, from 0")
    entity_id: str | None = Field(
        default=None, min_length=1, max_length=256, description="instead of request_id: the entity's latest"
    )
    label: str = Field(min_length=1, max_length=256, description="the observed label, in the dataset's words")
    observed_at: AwareDatetime | None = Field(default=None, description="when the outcome happened")

    @model_validator(mode="after")
    def _one_target(self) -> Feedback:
        if (self.request_id is None) == (self.entity_id is None):
            raise ValueError("give exactly one of request_id (with row) or entity_id")
        if "\x00" in (self.entity_id or "") + self.label:  # PostgreSQL text cannot hold NUL.
            raise ValueError("entity_id and label must not contain NUL characters")
        return self


def record(
    engine: Engine,
    *,
    outcomes: list[Feedback],
    model_name: str,
    labels: tuple[str, str],
    hmac_key: bytes | None,
    source: Literal["api", "csv"],
    positions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Check outcomes against the log and labels, store all or none; `positions` name them in errors."""
    rows, answers = [], []
    for index, outcome in enumerate(outcomes):
        where = f"{positions[index]}: " if positions else ""
        if outcome.label not in labels:
            raise InvalidOutcome(f"{where}label: must be one of {list(labels)}, got {outcome.label!r}")
        if outcome.request_id is not None:
            found = store.find_prediction(
                engine, model_name=model_name, request_id=outcome.request_id, row_index=outcome.row
            )
            missing = f"request {outcome.request_id} row {outcome.row} is not in the log of {model_name!r}"
        else:
            entity = outcome.entity_id or ""
            found = store.find_prediction(
                engine, model_name=model_name, entity_id=pseudonym(entity, hmac_key) if hmac_key else entity
            )
            missing = f"the entity has no logged prediction of {model_name!r}"  # Ids are not echoed.
        if found is None:
            raise UnknownPrediction(where + missing)
        rows.append(
            {
                "request_id": found["request_id"],
                "row_index": found["row_index"],
                "label": outcome.label,
                "positive": outcome.label == labels[1],
                "observed_at": outcome.observed_at,
                "source": source,
            }
        )
        answers.append(
            {
                "request_id": str(found["request_id"]),
                "row": found["row_index"],
                "model_version": found["model_version"],
                "predicted": found["prediction"],
                "label": outcome.label,
            }
        )
    for answer, replaced in zip(answers, store.record_outcomes(engine, outcomes=rows), strict=True):
        answer["replaced"] = replaced
    return answers
