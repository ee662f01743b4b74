"""Monitoring over a large prediction log: `python -m bench --log-scale [--sizes 100000,1000000]`.

A scratch PostgreSQL log is filled as the proxy fills it (one request a row, the attrition model's
answers with inputs and contributions, 30% labelled, every request shadowed), then `python -m
monitoring drift`, `compare` and `fairness` each run over the whole log at every size, in their own
process, timed from start to end; the peak memory is that process's. The goals: peak memory at the
largest size at most 1.5 times that at the smallest and under 1 GiB; time at most linear in rows.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sqlalchemy import text

from bench.batch import measured, publish
from bench.logcheck import fresh_database, quiet_logging
from bench.logfill import Pool, fill, pool
from logstore.database import make_engine, migrate
from registry_scripts.cli import fail
from training.config import load_config
from training.job import train

logger = logging.getLogger(__name__)
DATA = Path(__file__).resolve().parent.parent / "data" / "attrition.csv"
JOBS = ("drift", "compare", "fairness")
GOAL_MEMORY_GROWTH = 1.5
GOAL_MEMORY_MIB = 1024.0
SPAN = timedelta(days=30)  # The logged requests are spread over the month before the run.
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"


def _sizes(text_value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted(int(part) for part in text_value.split(",") if part.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected row counts like 100000,1000000, got {text_value!r}"
        ) from None
    if not sizes or any(size < 1000 for size in sizes):
        raise argparse.ArgumentTypeError(f"row counts must be at least 1000, got {text_value}")
    return sizes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The sizes, the training budget, the PostgreSQL server and where results go."""
    parser = argparse.ArgumentParser(prog="python -m bench --log-scale", description=__doc__)
    parser.add_argument("--sizes", type=_sizes, default=(100_000, 1_000_000),
                        help="logged rows, smallest first (100000,1000000)")  # fmt: skip
    parser.add_argument("--trials", type=int, default=5, help="search trials of the logged model (5)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE),
        help=f"PostgreSQL server where the scratch log is created and dropped (default {DEFAULT_DATABASE})",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path(__file__).resolve().parent, help="where results go (bench/)"
    )
    return parser.parse_args(argv)


def _pool(trials: int) -> tuple[Pool, str]:
    """The attrition model trained in the current MLflow store, and its answers to every dataset row."""
    config = load_config("attrition")
    outcome = train(config, trials=trials, cv_folds=3)
    model = mlflow.pyfunc.load_model(f"models:/attrition/{outcome.version}")
    frame = pd.read_csv(DATA)
    positive = (frame.pop(config.data.target) == config.data.positive_class).to_numpy()
    found = pool(model, frame, model_name="attrition", version=int(outcome.version), positive=positive)
    # The challenger answers another row's answer: a disagreeing challenger, shadowing every request.
    shuffled = list(np.random.default_rng(1).permutation(found.answers))
    return Pool(**{**found.__dict__, "shadow_version": found.version, "shadow_answers": shuffled}), str(
        outcome.version
    )


def run(args: argparse.Namespace, workdir: Path, database_url: str) -> dict[str, Any]:
    """Fill the log size by size and measure each job at each size."""
    tracking = f"sqlite:///{workdir}/mlflow.db"
    mlflow.set_tracking_uri(tracking)
    os.environ["MLFLOW_TRACKING_URI"] = tracking
    found, version = _pool(args.trials)
    engine = make_engine(database_url)
    migrate(engine)
    env = {**os.environ, "DATABASE_URL": database_url, "MLFLOW_TRACKING_URI": tracking}
    start = datetime.now(UTC) - SPAN
    filled, results = 0, []
    for size in args.sizes:
        logger.info("filling the log to %d rows", size)
        fill(engine, found, rows=size - filled, start=start, span=SPAN, id_column="employee_id", seed=size)
        filled = size
        with engine.connect() as connection:
            table = connection.execute(
                text("SELECT pg_total_relation_size('inference_predictions')")
            ).scalar_one()
        for job in JOBS:
            command = [sys.executable, "-m", "monitoring", job, "--model", "attrition", "--out", str(workdir)]
            if job != "compare":
                command += ["--version", version]
            side = measured(job, command, size, env=env, ok=(0, 1))
            results.append({**asdict(side), "table_mib": table / 2**20})
            logger.info("%s over %d rows: %.1f s, peak %.0f MiB", job, size, side.seconds, side.peak_rss_mib)
    engine.dispose()
    return {"sizes": list(args.sizes), "runs": results}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per job: memory growth and peak at the largest size, and time per row, largest against smallest."""
    small, large = min(results["sizes"]), max(results["sizes"])
    found = []
    for job in JOBS:
        runs = {run["rows"]: run for run in results["runs"] if run["name"] == job}
        growth = runs[large]["peak_rss_mib"] / runs[small]["peak_rss_mib"]
        per_row = (runs[large]["seconds"] / large) / (runs[small]["seconds"] / small)
        peak = runs[large]["peak_rss_mib"]
        met = growth <= GOAL_MEMORY_GROWTH and peak < GOAL_MEMORY_MIB and per_row <= 1.1
        found.append(
            {"job": job, "memory_growth": growth, "peak_mib": peak, "time_per_row": per_row, "met": met}
        )
    return found


def report(results: dict[str, Any]) -> str:
    """The figures as Markdown."""
    lines = [
        "# Monitoring over a large prediction log",
        "",
        f"`{results['command']}`, {results['finished_at']}, {results['cpus']} CPUs. Each job reads the whole "
        "log (one request a row, inputs and contributions as JSON, 30% labelled, every request shadowed) "
        "in its own process; peak memory is that process's resident set.",
        "",
        "| job | logged rows | table (MiB) | seconds | rows/s | peak memory (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r['name']} | {r['rows']:,} | {r['table_mib']:,.0f} | {r['seconds']:.1f} | "
            f"{r['rows_per_second']:,.0f} | {r['peak_rss_mib']:,.0f} |"
            for r in results["runs"]
        ),
        "",
        "| job | peak memory, largest / smallest (goal <= 1.5) | peak at the largest (goal < 1024 MiB) "
        "| seconds per row, largest / smallest (goal <= 1.1: linear) | met |",
        "|---|---:|---:|---:|---|",
        *(
            f"| {g['job']} | {g['memory_growth']:.2f} | {g['peak_mib']:,.0f} | {g['time_per_row']:.2f} | "
            f"{'yes' if g['met'] else 'NO'} |"
            for g in results["goals"]
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the log-scale benchmark; write log_scale_results.json and LOG_SCALE.md."""
    args = parse_args(argv)
    quiet_logging()
    here = Path.cwd()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-log-") as tmp,
            fresh_database(args.database_url, prefix="bench_log") as url,
        ):
            os.chdir(tmp)
            figures = run(args, Path(tmp), url)
    except RuntimeError as exc:
        return fail(str(exc))
    finally:
        os.chdir(here)
    results: dict[str, Any] = {
        "command": " ".join(
            ["python", "-m", "bench", "--log-scale", *(sys.argv[1:] if argv is None else argv)]
        ),
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        **figures,
    }
    results["goals"] = goals(results)
    publish(results, report(results), args.output_dir, data="log_scale_results.json", page="LOG_SCALE.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
