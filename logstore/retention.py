"""Storage limitation and erasure: rows past the retention period go, and so does one person on request."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, delete, exists, insert, select

from logstore.records import pseudonym
from logstore.tables import (
    entities,
    erasures,
    inference_outcomes,
    inference_predictions,
    inference_requests,
    shadow_predictions,
)

RETAIN_BATCH = 2_000  # Requests deleted in one transaction: each holds its locks for well under a second.


@dataclass
class Removed:
    """Rows removed from each table."""

    requests: int = 0
    predictions: int = 0
    outcomes: int = 0
    shadow_rows: int = 0
    entities: int = 0

    def add(self, other: Removed) -> None:
        """Count another batch in."""
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def describe(self) -> str:
        """One line: what was removed."""
        return ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in asdict(self).items())


def _delete_requests(connection: Connection, chosen: list[uuid.UUID]) -> Removed:
    """Delete the requests `chosen` selects (by request_id) and everything logged about them."""
    counted = {"outcomes": inference_outcomes, "shadow_rows": shadow_predictions,
               "predictions": inference_predictions, "requests": inference_requests}  # fmt: skip
    # In this order: what refers to a prediction before the prediction, and the request last.
    return Removed(**{
        key: connection.execute(delete(table).where(table.c.request_id.in_(chosen))).rowcount
        for key, table in counted.items()
    })  # fmt: skip


def retain(
    engine: Engine,
    *,
    before: datetime,
    batch: int = RETAIN_BATCH,
    progress: Callable[[Removed], None] | None = None,
) -> Removed:
    """Delete every request received before `before` with its predictions, shadow rows and outcomes.

    In batches of `batch` requests, one short transaction each, so the proxy's writer never waits long.
    """
    total = Removed()
    while True:
        with engine.begin() as connection:
            ids = list(
                connection.execute(
                    select(inference_requests.c.request_id)
                    .where(inference_requests.c.received_at < before)
                    .limit(batch)
                ).scalars()
            )
            if not ids:
                return total
            removed = _delete_requests(connection, ids)
        total.add(removed)
        if progress is not None:
            progress(total)


def erase(
    engine: Engine, *, entity_id: str, hmac_key: bytes | None, model_name: str | None, erased_by: str
) -> Removed:
    """Remove every row about one person (as logged, and as its pseudonym) and record that it was done."""
    ids = {entity_id} | ({pseudonym(entity_id, hmac_key)} if hmac_key is not None else set())
    person: ColumnElement[bool] = inference_predictions.c.entity_id.in_(sorted(ids))
    if model_name is not None:
        person &= exists().where(
            inference_requests.c.request_id == inference_predictions.c.request_id,
            inference_requests.c.model_name == model_name,
        )

    def theirs(table: Any) -> ColumnElement[bool]:
        return exists().where(
            inference_predictions.c.request_id == table.c.request_id,
            inference_predictions.c.row_index == table.c.row_index,
            person,
        )

    removed = Removed()
    with engine.begin() as connection:
        touched = set(connection.execute(select(inference_predictions.c.request_id).where(person)).scalars())
        removed.outcomes = connection.execute(
            delete(inference_outcomes).where(theirs(inference_outcomes))
        ).rowcount
        removed.shadow_rows = connection.execute(
            delete(shadow_predictions).where(theirs(shadow_predictions))
        ).rowcount
        removed.predictions = connection.execute(delete(inference_predictions).where(person)).rowcount
        if touched:
            # A request that held only this person's rows goes too; one shared with others keeps theirs.
            emptied = inference_requests.c.request_id.in_(sorted(touched)) & ~exists().where(
                inference_predictions.c.request_id == inference_requests.c.request_id
            )
            removed.requests = connection.execute(delete(inference_requests).where(emptied)).rowcount
        held: ColumnElement[bool] = entities.c.entity_id.in_(sorted(ids))
        if model_name is not None:
            held &= entities.c.model_name == model_name
        removed.entities = connection.execute(delete(entities).where(held)).rowcount
        connection.execute(
            insert(erasures).values(
                erasure_id=uuid.uuid4(), erased_at=datetime.now(UTC), erased_by=erased_by,
                model_name=model_name, **asdict(removed),
            )
        )  # fmt: skip
    return removed
