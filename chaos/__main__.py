"""Command line: `python -m chaos` injects faults into the real serving stack and reports what it kept.

It serves a model from the registry (`--model`, default: trains the attrition model in a scratch
MLflow store), logs to a scratch PostgreSQL database reached through a relay it can cut or hang,
and writes `results.json` and `RESULTS.md`. Exit status 1 when a promise was broken.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import Model
from mlflow.tracking import MlflowClient
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bench.logcheck import quiet_logging, scratch
from bench.servers import ServerError
from chaos import report
from chaos.relay import Relay
from chaos.scenarios import Stage, request_body, run_all
from logstore.database import first_line
from registry_scripts.actions import promote
from registry_scripts.cli import fail
from training.config import load_config
from training.errors import TrainingError
from training.job import train

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--model", help="registered model with @production (default: train one)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (4)")
    parser.add_argument("--fault-seconds", type=float, default=10.0, help="length of database faults (10)")
    parser.add_argument("--spool-bytes", type=int, default=100_000, help="the tiny spool's bound (100000)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CHAOS_DATABASE_URL", DEFAULT_DATABASE),
        help=f"PostgreSQL server for a scratch log database (env CHAOS_DATABASE_URL; {DEFAULT_DATABASE})",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path(__file__).resolve().parent, help="where results go (chaos/)"
    )
    args = parser.parse_args(argv)
    if args.clients < 1 or args.fault_seconds <= 0 or args.spool_bytes < 1000:
        parser.error("--clients >= 1, --fault-seconds > 0 and --spool-bytes >= 1000 are required")
    return args


def _model(name: str | None) -> str:
    if name:
        return name
    mlflow.set_tracking_uri(f"sqlite:///{Path.cwd()}/mlflow.db")
    os.environ["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    outcome = train(load_config("attrition"), trials=5, cv_folds=3)
    promote(MlflowClient(), outcome.model_name, outcome.version, "production", user="chaos", reason="chaos")
    return outcome.model_name


def _body(model: str) -> bytes:
    local = mlflow.artifacts.download_artifacts(f"models:/{model}@production")
    example = Model.load(local).load_input_example(local)
    assert isinstance(example, pd.DataFrame), "the model's input example must be a DataFrame"
    return request_body(example.head(1).to_json(orient="split", index=False))


def run(args: argparse.Namespace, workdir: Path, database_url: str) -> list[dict[str, object]]:
    """Every scenario against `--model` (or a fresh one); the outcomes as plain data."""
    model = _model(args.model)
    url = make_url(database_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432).start()
    try:
        stage = Stage(
            model=model, database_url=database_url, relay=relay, workdir=workdir, body=_body(model),
            relayed_url=url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False),
            clients=args.clients, fault_seconds=args.fault_seconds,
        )  # fmt: skip
        return [outcome.as_json() for outcome in run_all(stage, spool_bytes=args.spool_bytes)]
    finally:
        relay.close()


def main(argv: list[str] | None = None) -> int:
    """Run the faults, print and write the results; 1 if a promise was broken, 2 if it could not run."""
    args = parse_args(argv)
    quiet_logging()
    if args.model and not os.environ.get("MLFLOW_TRACKING_URI"):
        # Serving's default store, pinned to this directory: the run works in a scratch one.
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    try:
        with scratch("chaos", args.database_url) as (workdir, url):
            outcomes = run(args, workdir, url)
    except SQLAlchemyError as exc:
        return fail(f"--database-url: {first_line(exc)}")
    except (ServerError, TrainingError, mlflow.exceptions.MlflowException) as exc:
        return fail(f"{first_line(exc)}")
    environment = {
        "run": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}",
        "clients": str(args.clients),
        "database faults": f"{args.fault_seconds:g} s",
    }
    text = report.markdown(outcomes, environment)
    print(text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "results.json").write_text(
        json.dumps({"environment": environment, "outcomes": outcomes}, indent=2) + "\n", encoding="utf-8"
    )
    (args.output_dir / "RESULTS.md").write_text(text, encoding="utf-8")
    return 1 if any(outcome["broken"] for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
