"""The scratch room of a bench or chaos run: a working directory, a fresh PostgreSQL database, a count."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from logstore.tables import inference_predictions, inference_requests

logger = logging.getLogger(__name__)


@contextmanager
def fresh_database(admin_url: str, *, prefix: str = "bench") -> Iterator[str]:
    """Create an empty database on the server `admin_url` names, yield its URL, drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        logger.info("scratch database %s created", name)
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def scratch(prefix: str, admin_url: str) -> Iterator[tuple[Path, str]]:
    """A temporary directory, made current, and a fresh database's URL; both are gone afterwards."""
    home = Path.cwd()
    with (
        tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp,
        fresh_database(admin_url, prefix=prefix) as url,
    ):
        os.chdir(tmp)  # The training job and the servers keep their files here.
        try:
            yield Path(tmp), url
        finally:
            os.chdir(home)


def quiet_logging() -> None:
    """Our progress lines with timestamps; MLflow's, httpx's and Alembic's only when they warn."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("mlflow", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass(frozen=True)
class LogCount:
    """How the answered requests of a run show up in the log store."""

    answered: int
    stored: int
    lost: int
    duplicated: int


def count_logged(
    database_url: str, answered: list[str], *, rows_per_request: int, wait_seconds: float
) -> LogCount:
    """Wait for the spool to drain, then count lost and duplicated rows of the answered requests."""
    wanted = {uuid.UUID(request_id) for request_id in answered}
    engine = create_engine(database_url)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            with engine.connect() as connection:
                requests = Counter(connection.execute(select(inference_requests.c.request_id)).scalars())
                per_request = select(inference_predictions.c.request_id, func.count()).group_by(
                    inference_predictions.c.request_id
                )
                rows: dict[uuid.UUID, int] = {r: n for r, n in connection.execute(per_request).tuples()}
            stored = len(wanted & requests.keys())
            if stored == len(wanted) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
    lost = len([r for r in wanted if rows.get(r, 0) < rows_per_request])
    duplicated = sum(max(0, requests[r] - 1) + max(0, rows.get(r, 0) - rows_per_request) for r in wanted)
    return LogCount(len(wanted), stored, lost, duplicated)
