"""Migrations against a real PostgreSQL: exactly the declared tables, replicas migrating together."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from logstore.database import migrate
from logstore.tables import metadata
from tests.conftest import subprocess_env


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
