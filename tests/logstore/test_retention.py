"""Retention, erasure and export on real PostgreSQL, with the log filled as the proxy's writer fills it."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, func, select, text

from bench.logfill import Pool, fill
from logstore.__main__ import main
from logstore.database import make_engine, migrate
from logstore.records import pseudonym
from logstore.retention import retain
from logstore.store import upsert_entities
from logstore.tables import (
    entities,
    erasures,
    inference_outcomes,
    inference_predictions,
    inference_requests,
    metadata,
    shadow_predictions,
)

PEOPLE = 40
KEY = "erasure-test-key"
NOW = datetime.now(UTC).replace(microsecond=0)


def people() -> Pool:
    """One-row requests about 40 people (ids 1001-1040), answered and shadowed."""
    bodies, answers = [], []
    for person in range(1001, 1001 + PEOPLE):
        row = [person, 20 + person % 40, "Sales"]
        bodies.append(
            json.dumps({"dataframe_split": {"columns": ["employee_id", "Age", "Dept"], "data": [row]}})
        )
        answers.append(json.dumps({"predictions": [{
            "employee_id": person, "score": person % 10 / 10, "prediction": ["No", "Yes"][person % 10 > 4],
            "threshold": 0.5, "base_value": -1.0, "contributions": {"Age": 0.1}, "unseen_categories": [],
        }]}))  # fmt: skip
    return Pool("attrition", 1, bodies, answers, np.arange(PEOPLE) % 3 == 0, 2, answers)


@pytest.fixture
def engine(postgres_url: str) -> Engine:
    """A migrated, empty log store."""
    found = make_engine(postgres_url)
    migrate(found)
    return found


def counts(engine: Engine) -> dict[str, int]:
    """Rows in each table of the log."""
    tables = (inference_requests, inference_predictions, inference_outcomes, shadow_predictions, entities)
    with engine.connect() as connection:
        return {t.name: connection.execute(select(func.count()).select_from(t)).scalar_one() for t in tables}


def test_retention_removes_exactly_what_is_older_while_the_writer_writes(engine: Engine) -> None:
    fill(engine, people(), rows=3000, start=NOW - timedelta(days=10), span=timedelta(days=10),
         id_column="employee_id")  # fmt: skip
    cutoff = NOW - timedelta(days=4)
    with engine.connect() as connection:
        old = set(connection.execute(
            select(inference_requests.c.request_id).where(inference_requests.c.received_at < cutoff)
        ).scalars())  # fmt: skip
        kept = set(connection.execute(select(inference_requests.c.request_id)).scalars()) - old
        kept_outcomes = connection.execute(
            select(func.count()).select_from(inference_outcomes)
            .where(inference_outcomes.c.request_id.in_(kept))
        ).scalar_one()  # fmt: skip
    assert 1000 < len(old) < 2000
    # The proxy's writer goes on logging new requests meanwhile: none of them may be lost or blocked.
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            fill(engine, people(), rows=50, start=NOW, span=timedelta(seconds=1), id_column="employee_id")

    writer = threading.Thread(target=write)
    writer.start()
    removed = retain(engine, before=cutoff, batch=300)
    stop.set()
    writer.join()
    assert (
        removed.requests == len(old) and removed.predictions == len(old) and removed.shadow_rows == len(old)
    )
    with engine.connect() as connection:
        left = set(connection.execute(select(inference_requests.c.request_id)).scalars())
        oldest = connection.execute(select(func.min(inference_requests.c.received_at))).scalar_one()
        outcomes = connection.execute(select(func.count()).select_from(inference_outcomes)).scalar_one()
    assert kept <= left and not (old & left) and oldest >= cutoff
    assert outcomes >= kept_outcomes and removed.outcomes > 0
    assert counts(engine)["inference_predictions"] == len(left)  # The new rows were all written.


def test_the_command_line_keeps_what_is_inside_the_period(
    postgres_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(engine, people(), rows=200, start=NOW - timedelta(days=3), span=timedelta(days=3),
         id_column="employee_id")  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("LOG_RETENTION", "1d")
    assert main(["retain"]) == 0
    said = capsys.readouterr().out
    assert "removed what was logged before" in said
    with engine.connect() as connection:
        oldest = connection.execute(select(func.min(inference_requests.c.received_at))).scalar_one()
    assert oldest >= NOW - timedelta(days=1, minutes=1)
    monkeypatch.setenv("LOG_RETENTION", "a year")
    assert main(["retain"]) == 2 and "LOG_RETENTION" in capsys.readouterr().err


def per_entity(engine: Engine) -> dict[str, int]:
    """Logged rows per entity id."""
    column = inference_predictions.c.entity_id
    with engine.connect() as connection:
        return dict(connection.execute(select(column, func.count()).group_by(column)).tuples().all())


def mentions(engine: Engine, needles: set[str]) -> list[str]:
    """Every table and column whose text holds one of the needles."""
    found = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for column in table.columns:
                for needle in needles:
                    query = text(
                        f"SELECT count(*) FROM {table.name} WHERE CAST({column.name} AS TEXT) LIKE :n"
                    )
                    if connection.execute(query, {"n": f"%{needle}%"}).scalar_one():
                        found.append(f"{table.name}.{column.name}")
    return found


@pytest.mark.parametrize("keyed", [True, False])
def test_erasure_leaves_nothing_of_the_person_and_everyone_else_intact(
    postgres_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    keyed: bool,
) -> None:  # fmt: skip
    key = KEY.encode() if keyed else None
    fill(engine, people(), rows=800, start=NOW - timedelta(days=2), span=timedelta(days=2),
         id_column="employee_id", hmac_key=key)  # fmt: skip
    as_logged = {str(p): pseudonym(str(p), key) if key else str(p) for p in range(1001, 1001 + PEOPLE)}
    upsert_entities(engine, model_name="attrition",
                    features={as_logged[p]: {"Age": 30, "Dept": "Sales"} for p in as_logged})  # fmt: skip
    per_person = per_entity(engine)
    before = counts(engine)
    person = "1017"
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    if keyed:
        monkeypatch.setenv("ENTITY_ID_HMAC_KEY", KEY)
    assert main(["erase", "--entity-id", person, "--model", "attrition", "--by", "dpo@example.com"]) == 0
    assert "erased: " in capsys.readouterr().out
    if keyed:  # The pseudonym is long enough to look for in every column of every table.
        assert mentions(engine, {as_logged[person]}) == []
    with engine.connect() as connection:  # A short id could stand inside a UUID: its own columns then.
        assert connection.execute(text(
            "SELECT (SELECT count(*) FROM inference_predictions WHERE entity_id = :id"
            " OR input->>'employee_id' = :id) + (SELECT count(*) FROM entities WHERE entity_id = :id)"
        ), {"id": person}).scalar_one() == 0  # fmt: skip
    after = counts(engine)
    gone = per_person[as_logged[person]]
    assert after["inference_predictions"] == before["inference_predictions"] - gone
    assert after["inference_requests"] == before["inference_requests"] - gone  # One-row requests.
    assert after["shadow_predictions"] == before["shadow_predictions"] - gone
    assert after["entities"] == before["entities"] - 1
    left = per_entity(engine)
    with engine.connect() as connection:
        record = connection.execute(select(erasures)).one()._mapping
    assert left == {k: v for k, v in per_person.items() if k != as_logged[person]}
    assert record["predictions"] == gone and record["erased_by"] == "dpo@example.com"
    assert person not in json.dumps({k: str(v) for k, v in record.items() if k != "erasure_id"})


def test_export_round_trips_one_file_a_day(engine: Engine, tmp_path: Path, postgres_url: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    start = datetime(2026, 11, 1, 12, tzinfo=UTC)
    fill(engine, people(), rows=600, start=start, span=timedelta(days=3), id_column="employee_id")
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    out = tmp_path / "export"
    assert main(["export", "--since", "2026-11-02", "--output", str(out)]) == 0
    files = sorted(path.name for path in out.iterdir())
    assert files == ["2026-11-02.parquet", "2026-11-03.parquet", "2026-11-04.parquet"]
    exported = pd.concat([pd.read_parquet(out / name) for name in files], ignore_index=True)
    with engine.connect() as connection:
        logged = pd.DataFrame([dict(row._mapping) for row in connection.execute(
            select(inference_requests.c.received_at, inference_predictions)
            .join(inference_requests, inference_requests.c.request_id == inference_predictions.c.request_id)
            .where(inference_requests.c.received_at >= datetime(2026, 11, 2, tzinfo=UTC))
            .order_by(inference_requests.c.received_at)
        )])  # fmt: skip
    assert len(exported) == len(logged) > 0
    assert exported["request_id"].tolist() == [str(r) for r in logged["request_id"]]
    assert exported["score"].tolist() == logged["score"].tolist()
    assert exported["received_at"].tolist() == [pd.Timestamp(t) for t in logged["received_at"]]
    assert [json.loads(doc) for doc in exported["input"]] == list(logged["input"])
    assert [json.loads(doc) for doc in exported["contributions"]] == list(logged["contributions"])
    assert exported["label"].notna().sum() > 0
