"""The background writer: moves spooled records into the log store in batches, off the request path."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from serving.records import to_rows
from serving.spool import Spool
from serving.store import write_log

logger = logging.getLogger(__name__)


class LogWriter:
    """A thread that writes every sealed spool segment to the database, then deletes it."""

    def __init__(self, spool: Spool, engine: Engine, *, flush_seconds: float, hmac_key: bytes | None) -> None:
        self._spool = spool
        self._engine = engine
        self._interval = flush_seconds
        self._hmac_key = hmac_key
        self._stop = threading.Event()
        self._flushing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self.database_up = True
        self.written = 0

    def start(self) -> None:
        """Start writing in the background; segments left by an earlier run go first."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.flush()
            self._stop.wait(self._interval)

    def flush(self) -> bool:
        """Write every sealed segment; False if the database refused (the segments stay)."""
        with self._flushing:
            for segment in self._spool.seal():
                try:
                    requests: list[dict[str, Any]] = []
                    predictions: list[dict[str, Any]] = []
                    for record in Spool.read(segment):
                        request, rows = to_rows(record, hmac_key=self._hmac_key)
                        requests.append(request)
                        predictions.extend(rows)
                    write_log(self._engine, requests=requests, predictions=predictions)
                except SQLAlchemyError as exc:
                    if self.database_up:
                        logger.warning(
                            "log store unreachable, rows stay in the spool: %s", str(exc).splitlines()[0]
                        )
                    self.database_up = False
                    return False
                self._spool.discard(segment)
                self.written += len(requests)
                if not self.database_up:
                    logger.warning("log store reachable again; spooled rows are being written")
                self.database_up = True
            return True

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
