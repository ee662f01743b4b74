"""Migrations against a real PostgreSQL: exactly the declared tables, replicas migrating together."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from bench.logfill import fill
from logstore.database import MIGRATIONS, make_engine, migrate
from logstore.tables import metadata
from tests.conftest import subprocess_env
from tests.logstore.test_retention import people


def test_migrations_create_exactly_the_declared_tables(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    migrate(engine)
    migrate(engine)  # Idempotent at head.
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    engine.dispose()


def test_replicas_starting_together_migrate_a_fresh_database_once(postgres_url: str) -> None:
    script = (
        "import sys; from logstore.database import make_engine, migrate; migrate(make_engine(sys.argv[1]))"
    )
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", script, postgres_url], env=subprocess_env(), stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    for replica in replicas:
        _, errors = replica.communicate(timeout=120)
        assert replica.returncode == 0, errors.decode()
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    engine.dispose()


def test_the_json_documents_migration_keeps_every_row_and_document(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0008")  # The log as it was: jsonb documents, a foreign key per row.
    fill(engine, people(), rows=500, start=datetime.now(UTC) - timedelta(days=1), span=timedelta(days=1),
         id_column="employee_id")  # fmt: skip
    read = "SELECT request_id, row_index, input::text, contributions::text, score FROM inference_predictions"
    with engine.connect() as connection:
        kind = "SELECT data_type FROM information_schema.columns WHERE table_name = 'inference_predictions' AND column_name = 'input'"  # noqa: E501
        assert connection.execute(text(kind)).scalar_one() == "jsonb"
        before = {row[:2]: row[2:] for row in connection.execute(text(read))}
    migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(text(kind)).scalar_one() == "json"
        after = {row[:2]: row[2:] for row in connection.execute(text(read))}
    assert len(after) == len(before) == 500 and after == before
    engine.dispose()
