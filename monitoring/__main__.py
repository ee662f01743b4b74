"""python -m monitoring drift | compare | fairness | outcomes | replay.

Exit status of `drift`: 0 no drift, 1 drift found (for a scheduler to alert on), 2 the report could
not be made (bad option, unknown model, too few logged rows, unreachable log store). Of `compare`:
0 no objection to the challenger, 1 objection, 2 not enough data (or a bad option, as `drift`). Of
`fairness`: 0 no protected attribute under the four-fifths rule, 1 one or more, 2 as `drift`. Of
`replay`: 0 the same score, decision and reasons, 1 not (the differences are printed), 2 not replayable.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from mlflow.tracking import MlflowClient
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from logstore.database import first_line, make_engine, safe_url
from logstore.errors import LogStoreError
from logstore.settings import LogStoreSettings
from monitoring import compare_job, drift_job, fairness_job, outcomes, reference, replay
from monitoring.challenger import CompareThresholds
from monitoring.drift import Thresholds
from monitoring.errors import MonitoringError
from monitoring.fairness_job import FairnessThresholds
from monitoring.report_run import ReportOutcome
from registry_scripts import fairness
from registry_scripts.access import configure_mlflow
from registry_scripts.cli import fail, problems

T = TypeVar("T", bound=BaseModel)
THRESHOLDS: dict[str, type[BaseModel]] = {
    "drift": Thresholds, "compare": CompareThresholds, "fairness": FairnessThresholds,
}  # fmt: skip


def _version(text: str) -> int | None:
    if not text:  # MLproject passes "" for "not given".
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a version number: {text!r}")
    return int(text)


def _time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _report_options(command: argparse.ArgumentParser, thresholds: type[BaseModel]) -> None:
    """The window, the report folder, the log store and each threshold: what `drift` and `compare` share."""
    command.add_argument("--since", type=_time, help="first logged time to include (ISO 8601; UTC if naive)")
    command.add_argument("--until", type=_time, help="logged times before this (ISO 8601)")
    command.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default reports/)")
    command.add_argument(
        "--database-url", help="log store (default: DATABASE_URL, else sqlite:///serving.db)"
    )
    for name, field in thresholds.model_fields.items():
        command.add_argument(f"--{name.replace('_', '-')}", dest=name, type=field.annotation,  # type: ignore[arg-type]
                             help=f"{field.description} (default {field.default})")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("drift", help="compare logged traffic with the training reference")
    report.add_argument("--model", required=True, help="registered model name")
    report.add_argument(
        "--version", type=_version, help="model version (default: @production, else the newest)"
    )
    _report_options(report, Thresholds)
    versus = commands.add_parser("compare", help="the served version against the challenger that shadowed it")
    versus.add_argument("--model", required=True, help="registered model name")
    _report_options(versus, CompareThresholds)
    groups = commands.add_parser("fairness", help="logged decisions and outcomes by protected group")
    groups.add_argument("--model", required=True, help="registered model name")
    groups.add_argument(
        "--version", type=_version, help="model version (default: @production, else the newest)"
    )
    _report_options(groups, FairnessThresholds)
    imports = commands.add_parser("outcomes", help="import observed labels from a CSV file")
    imports.add_argument("--model", required=True, help="registered model name")
    imports.add_argument(
        "--csv", type=Path, required=True, help="columns: label, request_id and row | entity_id"
    )
    imports.add_argument(
        "--database-url", help="log store (default: DATABASE_URL, else sqlite:///serving.db)"
    )
    again = commands.add_parser("replay", help="re-score one logged decision with its version and compare")
    again.add_argument("--request-id", type=uuid.UUID, required=True, help="the X-Request-ID of the request")
    again.add_argument("--row", type=int, default=0, help="its row, from 0 (default 0)")
    again.add_argument("--database-url", help="log store (default: DATABASE_URL, else sqlite:///serving.db)")
    return parser


def _replayed(found: replay.Replay, row: int) -> int:
    where = f"request {found.logged['request_id']} row {row}, {found.model} version {found.version}"
    if found.differences:
        print(f"{where}: NOT reproduced", *(f"  {line}" for line in found.differences), sep="\n")
        return 1
    reasons = ", ".join(reason["code"] for reason in found.logged.get("reasons") or []) or "none asked"
    print(
        f"{where}: reproduced: score {float(found.replayed['score']):.12g}, decision "
        f"{found.replayed['prediction']}, reasons {reasons}"
    )
    return 0


def _said(compared: compare_job.CompareOutcome) -> int:
    summary = compared.summary
    print(f"report: {compared.directory / 'report.html'} (MLflow run {compared.run_id})")
    reasons = "; ".join(summary["reasons"])
    print(
        f"{summary['model']} version {summary['challenger_version']} against version "
        f"{summary['champion_version']} on {summary['rows']} rows: {summary['verdict']}"
        + (f": {reasons}" if reasons else "")
    )
    return compared.exit_code


def _fair(assessed: ReportOutcome) -> int:
    summary = assessed.summary
    print(f"report: {assessed.directory / 'report.html'} (MLflow run {assessed.run_id})")
    min_ratio = summary["policy"]["min_ratio"]
    print(f"{summary['rows']} rows of {summary['model']} version {summary['version']}, "
          f"{summary['labelled']} labelled:")  # fmt: skip
    for item in summary["attributes"]:
        print(f"  {fairness.describe(item, min_ratio)}")
    if summary["unavailable"]:
        print(f"  not in the logged inputs: {', '.join(summary['unavailable'])}")
    return 1 if summary["flagged"] else 0


def _options(args: argparse.Namespace, model: type[T]) -> T:
    """A command's threshold options, validated; those not given keep their defaults."""
    return model(
        **{name: getattr(args, name) for name in model.model_fields if getattr(args, name) is not None}
    )


def _command(
    args: argparse.Namespace, client: MlflowClient, engine: Engine, settings: LogStoreSettings
) -> int:
    """Run one command against the log store; its exit status."""
    if args.command == "replay":
        return _replayed(replay.replay(engine, request_id=args.request_id, row=args.row), args.row)
    if args.command == "outcomes":
        version = reference.resolve_version(client, args.model, None)
        labels = reference.facts(client, args.model, version).labels
        stored = outcomes.store(engine, args.csv, model=args.model, labels=labels, hmac_key=settings.hmac_key)
        replaced = sum(1 for item in stored if item["replaced"] is not None)
        print(f"stored {len(stored)} outcome(s) from {args.csv}; {replaced} replaced an earlier label")
        return 0
    if args.command == "fairness":
        assessed = fairness_job.run(
            client, engine, model=args.model, version=args.version, since=args.since, until=args.until,
            out=args.out, thresholds=args.thresholds,
        )  # fmt: skip
        return _fair(assessed)
    if args.command == "compare":
        compared = compare_job.run(
            client, engine, model=args.model, since=args.since, until=args.until, out=args.out,
            thresholds=args.thresholds,
        )  # fmt: skip
        return _said(compared)
    outcome = drift_job.run(
        client, engine, model=args.model, version=args.version, since=args.since, until=args.until,
        out=args.out, thresholds=args.thresholds,
    )  # fmt: skip
    summary = outcome.summary
    print(f"report: {outcome.directory / 'report.html'} (MLflow run {outcome.run_id})")
    print(f"{summary['rows']} rows of {summary['model']} version {summary['version']}: "
          + (f"DRIFT in {', '.join(summary['drifted'])}" if summary["drift"] else "no drift"))  # fmt: skip
    return 1 if summary["drift"] else 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors are one line on stderr and exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        settings = LogStoreSettings(**({"database_url": args.database_url} if args.database_url else {}))
        if args.command in THRESHOLDS:
            args.thresholds = _options(args, THRESHOLDS[args.command])
    except ValidationError as exc:
        return fail(problems(exc, spell=lambda field: "--" + field.replace("_", "-")))
    configure_mlflow()
    client = MlflowClient()
    try:
        engine = make_engine(settings.database_url, must_exist=True)
    except LogStoreError as exc:
        return fail(exc.message)
    try:
        return _command(args, client, engine, settings)
    except MonitoringError as exc:
        return fail(exc.message)
    except SQLAlchemyError as exc:
        return fail(f"log store {safe_url(engine)}: {first_line(exc)}")
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
