"""python -m logstore migrate | retain | erase | export: the log store's schema, retention, erasure, export.

DATABASE_URL names the log store (default sqlite:///serving.db). Exit status: 0 done, 2 a bad option or
an unreachable store (one line on stderr).
"""

from __future__ import annotations

import argparse
import getpass
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from logstore import retention
from logstore.database import first_line, make_engine, migrate, safe_url
from logstore.errors import LogStoreError
from logstore.export import export
from logstore.settings import LogStoreSettings, period


def duration(text: str) -> timedelta:
    """`365d`, `12h`, `30m` or `45s`."""
    try:
        return period(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def moment(text: str) -> datetime:
    """An ISO 8601 time; UTC when it has no offset."""
    try:
        found = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _fail(message: str) -> int:
    """One line on stderr; the exit status of a command that could not run."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m logstore", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the schema to the latest version (as an owner role)")
    keep = commands.add_parser("retain", help="delete what was logged before the retention period")
    keep.add_argument(
        "--older-than", type=duration,
        help="how long the log keeps a request, e.g. 365d (default: LOG_RETENTION)",
    )  # fmt: skip
    keep.add_argument("--every", type=duration, help="run again at this interval until stopped (a sidecar)")
    forget = commands.add_parser("erase", help="remove everything logged about one person")
    forget.add_argument("--entity-id", required=True, help="the person's id, as clients send it")
    forget.add_argument("--model", help="only this model's rows (default: every model)")
    forget.add_argument("--by", default=getpass.getuser(), help="who asked, for the record (default: you)")
    out = commands.add_parser("export", help="write logged predictions as Parquet, one file a day")
    out.add_argument("--since", type=moment, help="first received time to include (ISO 8601; UTC if naive)")
    out.add_argument("--until", type=moment, help="received times before this (ISO 8601)")
    out.add_argument("--output", required=True, help="a folder, or a URI pyarrow writes (s3://bucket/log)")
    return parser


def _retain(engine: Engine, settings: LogStoreSettings, args: argparse.Namespace) -> int:
    older_than = args.older_than or settings.retention
    if older_than is None:
        return _fail("--older-than: give a period such as 365d, or set LOG_RETENTION")
    stop = threading.Event()
    if args.every:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    while True:
        before = datetime.now(UTC) - older_than
        removed = retention.retain(engine, before=before)
        print(f"removed what was logged before {before.isoformat(timespec='seconds')}: {removed.describe()}",
              flush=True)  # fmt: skip
        if not args.every or stop.wait(args.every.total_seconds()):
            return 0


def _command(engine: Engine, settings: LogStoreSettings, args: argparse.Namespace) -> int:
    if args.command == "migrate":
        migrate(engine)
        print(f"log store {safe_url(engine)} is at the latest schema")
        return 0
    if args.command == "retain":
        return _retain(engine, settings, args)
    if args.command == "erase":
        removed = retention.erase(
            engine, entity_id=args.entity_id, hmac_key=settings.hmac_key, model_name=args.model,
            erased_by=args.by,
        )  # fmt: skip
        print(f"erased: {removed.describe()}; the erasure is recorded (when, by whom, how many rows)")
        return 0
    written = export(engine, since=args.since, until=args.until, output=args.output)
    for day, rows in written.items():
        print(f"{args.output.rstrip('/')}/{day}.parquet: {rows} rows")
    print(f"exported {sum(written.values())} rows in {len(written)} file(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command against the log store DATABASE_URL names."""
    args = _parser().parse_args(argv)
    try:
        settings = LogStoreSettings()
        engine = make_engine(settings.database_url, must_exist=args.command != "migrate")
    except ValidationError as exc:
        error = exc.errors()[0]
        return _fail(f"{'.'.join(map(str, error['loc'])).upper()}: {error['msg']}")
    except LogStoreError as exc:
        return _fail(exc.message)
    try:
        return _command(engine, settings, args)
    except LogStoreError as exc:
        return _fail(exc.message)
    except SQLAlchemyError as exc:
        return _fail(f"log store {safe_url(engine)}: {first_line(exc)}")
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
