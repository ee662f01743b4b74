"""Bring the log store's schema to Alembic's head: `python -m logstore migrate` (DATABASE_URL)."""

from __future__ import annotations

import argparse
import sys

from logstore.database import make_engine, migrate, safe_url
from logstore.errors import LogStoreError
from logstore.settings import LogStoreSettings


def main(argv: list[str] | None = None) -> int:
    """Migrate the database that DATABASE_URL names (as an owner role: the proxy's role needs no DDL)."""
    parser = argparse.ArgumentParser(prog="python -m logstore", description=__doc__)
    parser.add_argument("command", choices=["migrate"])
    parser.parse_args(argv)
    try:
        engine = make_engine(LogStoreSettings().database_url)
        migrate(engine)
    except LogStoreError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(f"log store {safe_url(engine)} is at the latest schema")
    return 0


if __name__ == "__main__":
    sys.exit(main())
