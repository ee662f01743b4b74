"""The background writer: moves spooled records into the log store in batches, off the request path."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from logstore.database import first_line
from logstore.records import shadow_rows, to_rows
from logstore.spool import Spool
from logstore.store import write_log

logger = logging.getLogger(__name__)
# Refusals of a record's own content; any other database error leaves every record in the spool.
CONTENT_ERRORS = (DataError, IntegrityError)
REJECTED = "rejected.ndjson"  # Records the database refused (bad data, not an outage), kept for a person.
Exchange = tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]
Shadowed = tuple[dict[str, Any], list[dict[str, Any]]]  # A shadow call's record and its rows.
RESTART_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)  # Back-off between restarts of a crashed writer loop.


class WriterEvents(Protocol):
    """What the writer reports (the proxy's metrics)."""

    def written(
        self,
        *,
        requests: Sequence[dict[str, Any]],
        predictions: Sequence[dict[str, Any]],
        shadows: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Rows were stored."""

    def write_failed(self) -> None:
        """A write failed; its records stay in the spool."""

    def rejected(self) -> None:
        """The database refused a record's content; it was set aside."""

    def writer_restarted(self) -> None:
        """The writer loop crashed and was started again."""


class LogWriter:
    """A thread that writes every sealed spool segment to the database, then deletes it."""

    def __init__(
        self,
        spool: Spool,
        engine: Engine,
        *,
        flush_seconds: float,
        hmac_key: bytes | None,
        events: WriterEvents,
    ) -> None:
        self._spool = spool
        self._events = events
        self._engine = engine
        self._interval = flush_seconds
        self._hmac_key = hmac_key
        self._stop = threading.Event()
        self._flushing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self.database_up = True
        self.crashed: str | None = None  # Why the writer loop is down, while it waits to restart.

    def start(self) -> None:
        """Start writing in the background; segments left by an earlier run go first."""
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the writer thread runs and its loop is not down after a crash."""
        return self._thread.is_alive() and self.crashed is None

    def _run(self) -> None:
        # The supervisor: an unexpected error (a full disk, a bug) restarts the loop after a back-off
        # instead of ending the thread, so the spool keeps draining once the cause is gone.
        crashes = 0
        while not self._stop.is_set():
            try:
                self.flush()
            except Exception as exc:
                self.crashed = f"{type(exc).__name__}: {exc}"
                logger.exception("log writer crashed; restarting it")
                self._events.writer_restarted()
                self._stop.wait(RESTART_SECONDS[min(crashes, len(RESTART_SECONDS) - 1)])
                crashes += 1
                continue
            crashes, self.crashed = 0, None
            self._stop.wait(self._interval)

    def flush(self) -> bool:
        """Write every sealed segment; False if the database is unreachable (the segments stay)."""
        with self._flushing:
            for segment in self._spool.seal():
                records = list(Spool.read(segment))
                exchanges = [self._rows(record) for record in records if "shadow" not in record]
                shadows = [self._shadow(record) for record in records if "shadow" in record]
                try:
                    self._write(
                        [rows for rows in exchanges if rows is not None],
                        [rows for rows in shadows if rows is not None],
                    )
                except SQLAlchemyError as exc:
                    self._events.write_failed()
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

    def _shadow(self, record: dict[str, Any]) -> Shadowed | None:
        try:
            return record, shadow_rows(record["shadow"])
        except (KeyError, ValueError, TypeError) as exc:
            self._reject(record, f"unreadable shadow record: {exc!r}")
            return None

    def _write(self, exchanges: list[Exchange], shadowed: list[Shadowed]) -> None:
        requests = [request for _, request, _ in exchanges]
        predictions = [row for _, _, rows in exchanges for row in rows]
        shadows = [row for _, rows in shadowed for row in rows]
        try:
            write_log(self._engine, requests=requests, predictions=predictions, shadows=shadows)
            self._events.written(requests=requests, predictions=predictions, shadows=shadows)
        except CONTENT_ERRORS:
            for record, rows in shadowed:
                try:
                    write_log(self._engine, requests=[], predictions=[], shadows=rows)
                    self._events.written(requests=[], predictions=[], shadows=rows)
                except CONTENT_ERRORS as exc:
                    self._reject(record, first_line(exc))
            # One bad row must not hold the others back: write one by one, set aside what is refused.
            for record, request, rows in exchanges:
                try:
                    write_log(self._engine, requests=[request], predictions=rows)
                    self._events.written(requests=[request], predictions=rows)
                except CONTENT_ERRORS as exc:
                    self._reject(record, first_line(exc))
                    self._write_request_alone(request, first_line(exc))

    def _write_request_alone(self, request: dict[str, Any], reason: str) -> None:
        # Every answered request keeps its row in inference_requests, even when its rows cannot be stored.
        alone = {**request, "input_error": f"rows not stored, the log store refused them: {reason}"[:1000]}
        try:
            write_log(self._engine, requests=[alone], predictions=[])
            self._events.written(requests=[alone], predictions=[])
        except CONTENT_ERRORS as exc:
            logger.error("log: request %s refused alone too: %s", request["request_id"], first_line(exc))  # noqa: TRY400 - the message says it all; no traceback

    def _reject(self, record: dict[str, Any], reason: str) -> None:
        self._events.rejected()
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
