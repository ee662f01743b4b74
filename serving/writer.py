"""The background writer: moves spooled records into the log store in batches, off the request path."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from serving.database import first_line
from serving.metrics import Metrics
from serving.records import to_rows
from serving.spool import Spool
from serving.store import write_log

logger = logging.getLogger(__name__)
# Refusals of a record's own content; any other database error leaves every record in the spool.
CONTENT_ERRORS = (DataError, IntegrityError)
REJECTED = "rejected.ndjson"  # Records the database refused (bad data, not an outage), kept for a person.
Exchange = tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]


class LogWriter:
    """A thread that writes every sealed spool segment to the database, then deletes it."""

    def __init__(
        self, spool: Spool, engine: Engine, *, flush_seconds: float, hmac_key: bytes | None, metrics: Metrics
    ) -> None:
        self._spool = spool
        self._metrics = metrics
        self._engine = engine
        self._interval = flush_seconds
        self._hmac_key = hmac_key
        self._stop = threading.Event()
        self._flushing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self.database_up = True

    def start(self) -> None:
        """Start writing in the background; segments left by an earlier run go first."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.flush()
            self._stop.wait(self._interval)

    def flush(self) -> bool:
        """Write every sealed segment; False if the database is unreachable (the segments stay)."""
        with self._flushing:
            for segment in self._spool.seal():
                exchanges = [self._rows(record) for record in Spool.read(segment)]
                try:
                    self._write([rows for rows in exchanges if rows is not None])
                except SQLAlchemyError as exc:
                    self._metrics.log_failures.inc()
                    # Unreachable, or refusing every write (a missing grant): the rows wait in the spool.
                    if self.database_up:
                        logger.warning(
                            "log store takes no rows now; they stay in the spool: %s", first_line(exc)
                        )
                    self.database_up = False
                    return False
                self._spool.discard(segment)
                if not self.database_up:
                    logger.warning("log store reachable again; spooled rows are being written")
                self.database_up = True
            return True

    def _rows(self, record: dict[str, Any]) -> Exchange | None:
        try:
            request, predictions = to_rows(record, hmac_key=self._hmac_key)
        except (KeyError, ValueError, TypeError) as exc:
            self._reject(record, f"unreadable record: {exc!r}")
            return None
        return record, request, predictions

    def _write(self, exchanges: list[Exchange]) -> None:
        requests = [request for _, request, _ in exchanges]
        predictions = [row for _, _, rows in exchanges for row in rows]
        try:
            write_log(self._engine, requests=requests, predictions=predictions)
            self._metrics.written(requests=requests, predictions=predictions)
        except CONTENT_ERRORS:
            # One bad row must not hold the others back: write one by one, set aside what is refused.
            for record, request, rows in exchanges:
                try:
                    write_log(self._engine, requests=[request], predictions=rows)
                    self._metrics.written(requests=[request], predictions=rows)
                except CONTENT_ERRORS as exc:
                    self._reject(record, first_line(exc))

    def _reject(self, record: dict[str, Any], reason: str) -> None:
        self._metrics.log_rejected.inc()
        request_id = record.get("request", {}).get("request_id")
        logger.error(
            "log: request %s refused by the log store (%s); kept in %s", request_id, reason, REJECTED
        )
        with (self._spool.directory / REJECTED).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"reason": reason, "record": record}, default=str) + "\n")

    def close(self) -> bool:
        """Stop the thread and write what is left; False if rows had to stay in the spool."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        done = self.flush()
        if not done:
            logger.warning(
                "log store unreachable at shutdown: %s keeps the rows for the next start",
                self._spool.directory,
            )
        return done
