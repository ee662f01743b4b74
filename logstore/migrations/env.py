"""Alembic environment: runs on the connection that `logstore.database.migrate` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from logstore.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` on the command line: the URL comes from alembic's config.
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "sqlite:///serving.db")
    with engine.begin() as fresh:
        context.configure(connection=fresh, target_metadata=metadata)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
