"""A bounded write-ahead log on local disk: every answered request is in it before the answer leaves.

Records are appended to the open segment (a JSON-lines file); the writer closes segments, writes
their records to the database and deletes them. A crash loses nothing that was answered: segments
left behind are replayed at the next start, and replays are harmless because rows are keyed by
request id.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from logstore.errors import SpoolFull, SpoolWriteFailed, StoreConfigError

logger = logging.getLogger(__name__)


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


class Spool:
    """Append-only segments in one directory, owned by one process at a time."""

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._owner = open(directory / "spool.lock", "a")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._owner.close()
            raise StoreConfigError(
                f"SERVING_SPOOL_DIR: {directory} is in use by another serving process"
            ) from exc
        closed = self._segments()
        self._next = int(closed[-1].stem) + 1 if closed else 1
        self._size = sum(path.stat().st_size for path in closed)
        self._records = {path.name: _lines(path) for path in closed}  # Records per segment not yet written.
        self._current: IO[bytes] | None = None
        if closed:
            logger.info("spool: %d segment(s) from an earlier run will be replayed", len(closed))

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("[0-9]*.jsonl"))

    @property
    def size(self) -> int:
        """Bytes held, written or not."""
        return self._size

    @property
    def records(self) -> int:
        """Records held, not yet written to the log store."""
        with self._lock:  # The writer thread removes segments meanwhile.
            return sum(self._records.values())

    def full(self) -> bool:
        """Whether the size bound is reached."""
        return self._size >= self.max_bytes

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one record; `SpoolFull` past the bound, `SpoolWriteFailed` when the disk refuses it."""
        # orjson: a large body is escaped several times faster than by json, on the request path.
        try:
            line = orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:  # What only json writes: an integer past 64 bits, a lone surrogate.
            line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            if self._size + len(line) > self.max_bytes:
                raise SpoolFull()
            if self._current is None:
                path = self.directory / f"{self._next:016d}.jsonl"
                self._next += 1
                self._current = path.open("ab")
                self._records[path.name] = 0
            # flush() hands the line to the kernel: it survives the process being killed.
            try:
                self._current.write(line)
                self._current.flush()
            except OSError as exc:
                # A torn line ends this segment, so the next record does not run on from it.
                with contextlib.suppress(OSError):
                    self._current.close()
                self._current = None
                raise SpoolWriteFailed(f"the prediction log spool cannot be written: {exc}") from exc
            self._size += len(line)
            self._records[Path(self._current.name).name] += 1

    def seal(self) -> list[Path]:
        """Close the open segment and return every closed segment, oldest first."""
        with self._lock:
            if self._current is not None:
                self._current.close()
                self._current = None
            return self._segments()

    def discard(self, segment: Path) -> None:
        """Delete a segment whose records are stored."""
        with self._lock:
            size = segment.stat().st_size
            segment.unlink()
            self._size -= size
            self._records.pop(segment.name, None)

    @staticmethod
    def read(segment: Path) -> Iterator[dict[str, Any]]:
        """The records of a segment; a torn last line (a crash while appending) is skipped."""
        with segment.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    try:  # A segment written before orjson may hold what only json reads (NaN).
                        yield json.loads(line)
                    except ValueError:
                        logger.warning("spool: %s line %d is incomplete, skipped", segment.name, number)

    def close(self) -> None:
        """Close the open segment and give up ownership."""
        self.seal()
        self._owner.close()
