"""One engine per process, waiting for the database, and Alembic migrations to `head`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from logstore.errors import StoreConfigError, StoreUnavailable

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x5E2F_1A6  # PostgreSQL advisory lock key: one migrating process at a time.


def json_text(value: Any) -> str:
    """A JSON column's text: orjson, several times faster than json on the writer's many rows."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # What only json writes: an integer past 64 bits.
        return json.dumps(value)


def json_value(text: str | bytes) -> Any:
    """A JSON column's value: orjson, several times faster than json on monitoring's many documents."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # What only json reads: an integer past 64 bits.
        return json.loads(text)


def make_engine(url: str, *, must_exist: bool = False) -> Engine:
    """The process's engine; connections are checked before use so a restarted database is found.

    `must_exist`: a reader of the log refuses a SQLite file that is not there instead of creating it.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreConfigError(f"DATABASE_URL: not a database URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if must_exist and path not in ("", ":memory:") and not Path(path).is_file():
            raise StoreConfigError(
                f"DATABASE_URL: no log store at {url} ({Path(path).resolve()} does not exist); "
                "set DATABASE_URL or --database-url to the serving proxy's log store"
            )
        return create_engine(
            parsed, connect_args={"timeout": 5}, json_serializer=json_text, json_deserializer=json_value
        )
    options: dict[str, Any] = {}
    # connect_timeout keeps a vanished server from holding the writer for minutes.
    connect: dict[str, Any] = {"connect_timeout": 3}
    if parsed.get_driver_name() == "psycopg2":
        # Batches the writer's many-row INSERTs into few round trips: half the time of plain executemany.
        options["executemany_mode"] = "values_plus_batch"
        # A server gone silent mid-query (a network partition) is given up on after about 30 s.
        connect |= {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                    "keepalives_count": 3, "tcp_user_timeout": 30_000}  # fmt: skip
    return create_engine(
        parsed, pool_pre_ping=True, connect_args=connect, json_serializer=json_text,
        json_deserializer=json_value, **options,
    )  # fmt: skip


def safe_url(engine: Engine) -> str:
    """The engine's URL without its password, for messages."""
    return engine.url.render_as_string(hide_password=True)


def ping(engine: Engine) -> None:
    """Raise `StoreUnavailable` unless the database answers."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"database {safe_url(engine)} is unreachable: {first_line(exc)}") from exc


def wait_for(engine: Engine, seconds: float) -> None:
    """Wait until the database answers, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            ping(engine)
        except StoreUnavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
        else:
            return


def migrate(engine: Engine) -> None:
    """Bring the log schema to Alembic's `head`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together on a fresh database would race to create the same tables.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"cannot migrate {safe_url(engine)}: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    """An error's first line (a database error's without SQLAlchemy's wrapping), or its type if empty."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
