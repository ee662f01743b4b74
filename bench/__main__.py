"""Command line: `python -m bench [--quick]` measures, prints a table, writes results.json and RESULTS.md."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from bench import measure, report
from bench.build import CANARIED, OURS, SEED_STYLE_PARAMS, build
from bench.logcheck import count_logged, quiet_logging, scratch
from bench.servers import Server, ServerError, backend_url, mlflow_server, proxy
from logstore.database import first_line
from registry_scripts.cli import fail
from training.errors import TrainingError

DATA = Path(__file__).resolve().parent.parent / "data" / "attrition.csv"
FULL = {"rounds": 1000, "batches": 20, "load_seconds": 60.0, "trials": 0, "wide_bodies": 3, "sweep": "1,4,64"}
QUICK = {"rounds": 200, "batches": 5, "load_seconds": 15.0, "trials": 5, "wide_bodies": 1, "sweep": ""}
SWEEP_SECONDS = 20.0
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _client_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected client counts like 1,4,64, got {text!r}") from None
    if any(count <= 0 for count in counts):
        raise argparse.ArgumentTypeError(f"client counts must be > 0, got {text}")
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; `--quick` changes the defaults of the sizes not given."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller run, about 5 minutes on 2 cores")
    parser.add_argument(
        "--batch", action="store_true", help="instead: batch scoring on Spark (`python -m bench --batch -h`)"
    )
    parser.add_argument(
        "--log-scale", action="store_true",
        help="instead: monitoring over a large log (`python -m bench --log-scale -h`)",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=_positive(int), help="single-row requests per server (1000; quick 200)"
    )
    parser.add_argument("--batches", type=_positive(int), help="large requests per path (20; quick 5)")
    parser.add_argument(
        "--batch-rows", type=_positive(int), default=1000, help="rows per large request (1000)"
    )
    parser.add_argument(
        "--wide-bodies",
        type=_positive(int),
        help="14 MB bodies refused while one-row requests go on (3; quick 1)",
    )
    parser.add_argument(
        "--load-seconds", type=_positive(float), help="length of each load run (60; quick 15)"
    )
    parser.add_argument(
        "--clients", type=_positive(int), default=16, help="concurrent clients under load (16)"
    )
    parser.add_argument(
        "--sweep", type=_client_counts, help="other client counts, 20 s each (1,4,64; quick: none)"
    )
    parser.add_argument(
        "--trials", type=_positive(int), help="search trials for our model (config's; quick 5)"
    )
    parser.add_argument("--cv-folds", type=_positive(int), help="CV folds for our model (config's)")
    parser.add_argument(
        "--workers", type=_positive(int), default=1, help="uvicorn workers per model server (1)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE),
        help="PostgreSQL server where a scratch log database is created and dropped "
        f"(env BENCH_DATABASE_URL; default {DEFAULT_DATABASE})",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path(__file__).resolve().parent, help="where results go (bench/)"
    )
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, _client_counts(str(value)) if key == "sweep" else value or None)
    if args.cv_folds == 1:
        parser.error("--cv-folds must be at least 2")
    if args.batch_rows > 1470:
        parser.error("--batch-rows: data/attrition.csv has 1,470 rows")
    return args


def run(args: argparse.Namespace, workdir: Path, database_url: str) -> dict[str, Any]:
    """Build, start, measure and stop; the figures as a dictionary."""
    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    os.environ["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    subjects = build(trials=args.trials, cv_folds=args.cv_folds)
    frame = pd.read_csv(DATA).drop(columns=["Attrition"])
    singles = [measure.request_body(frame.iloc[[i]]) for i in range(200)]
    batch = measure.request_body(frame.head(args.batch_rows))

    workers = args.workers
    servers: dict[str, Server] = {
        "constant": mlflow_server("constant", subjects.constant_uri, workdir, workers=workers),
        "seed_style": mlflow_server("seed-style", subjects.seed_style_uri, workdir, workers=workers),
        "proxy_on": proxy(
            "proxy-on", OURS, workdir, database_url=database_url, log_requests=True, workers=workers
        ),
        "proxy_off": proxy(
            "proxy-off", OURS, workdir, database_url=database_url, log_requests=False, workers=workers
        ),
        "proxy_shadow": proxy(
            "proxy-shadow", OURS, workdir, database_url=database_url, log_requests=True, workers=workers,
            env={"SERVING_SHADOW": "staging"},
        ),
        "proxy_canary": proxy(
            "proxy-canary", CANARIED, workdir, database_url=database_url, log_requests=True, workers=workers,
        ),
        "proxy_unbatched": proxy(
            "proxy-unbatched", OURS, workdir, database_url=database_url, log_requests=True, workers=workers,
            env={"SERVING_BATCHING": "false"},
        ),
    }  # fmt: skip
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready()
        servers["proxy_shadow"].wait_shadowing()
        servers["proxy_canary"].wait_shadowing(state="canary.json")
        on, off = servers["proxy_on"], servers["proxy_off"]
        direct = backend_url(on)
        logging.info("measuring single rows, %d rounds", args.rounds)
        targets = {"constant": servers["constant"].url, "seed_style": servers["seed_style"].url,
                   "ours_direct": direct, "ours_proxy": on.url}  # fmt: skip
        single = measure.interleaved_latencies(targets, singles, rounds=args.rounds, warmup=20)
        memory = {name: server.rss_bytes() / report.MIB for name, server in servers.items()}
        logging.info("measuring %d batches of %d rows", args.batches, args.batch_rows)
        in_process = measure.in_process_rows_per_second(
            subjects.artifacts, frame.head(args.batch_rows), repeats=args.batches
        )
        floor_batches = measure.batch_latencies(servers["constant"].url, batch, count=args.batches)
        direct_batches = measure.batch_latencies(direct, batch, count=args.batches)
        # Logging off before on: the logging proxy's writer still works on its batches afterwards.
        unlogged_batches = measure.batch_latencies(off.url, batch, count=args.batches)
        proxy_batches = measure.batch_latencies(on.url, batch, count=args.batches)
        answer = measure.answer(direct, batch)
        log_work = measure.log_work_ms(database_url, batch, answer, repeats=args.batches)
        logging.info("one-row requests while %d wide bodies are refused", args.wide_bodies)
        wide = measure.while_refusing(
            on.url, singles, measure.wide_body(), rounds=min(args.rounds, 200), wides=args.wide_bodies
        )
        bare = Server("bare", direct, "/ping", [], workdir / "bare.log", {})  # The proxy's own backend.
        under_load = {
            "bare": bare, "unbatched": servers["proxy_unbatched"], "on": on, "off": off,
            "shadow": servers["proxy_shadow"], "canary": servers["proxy_canary"],
        }  # fmt: skip
        loads = {
            name: _load(server, singles, database_url, clients=args.clients, seconds=args.load_seconds)
            for name, server in under_load.items()
        }
        sweep = {
            str(clients): {
                name: _load(under_load[name], singles, database_url, clients=clients, seconds=SWEEP_SECONDS)
                for name in ("bare", "unbatched", "on")
            }
            for clients in args.sweep
        }
    finally:
        for server in servers.values():
            server.stop()

    def rows_per_second(times: list[float]) -> float:
        return args.batch_rows * len(times) / (sum(times) / 1000)

    return {
        "single_row_ms": {name: report.summary(times) for name, times in single.items()},
        "batch": {
            "in_process_rows_per_s": in_process,
            "constant_rows_per_s": rows_per_second(floor_batches),
            "constant_ms": report.summary(floor_batches),
            "direct_rows_per_s": rows_per_second(direct_batches),
            "direct_ms": report.summary(direct_batches),
            "proxy_rows_per_s": rows_per_second(proxy_batches),
            "proxy_ms": report.summary(proxy_batches),
            "unlogged_rows_per_s": rows_per_second(unlogged_batches),
            "log_work_ms": report.summary(log_work),
            "unlogged_ms": report.summary(unlogged_batches),
        },
        "load": loads,
        "sweep": sweep,
        "wide_body": {
            "bytes": wide["wide_bytes"],
            "alone_ms": report.summary(wide["alone_ms"]),
            "during_ms": report.summary(wide["during_ms"]),
        },
        "memory_mib": memory,
        "model": {
            "trees": subjects.trees,
            "max_depth": subjects.max_depth,
            "seed_style_trees": SEED_STYLE_PARAMS["n_estimators"],
            "seed_style_depth": SEED_STYLE_PARAMS["max_depth"],
            "features": frame.shape[1] - 1,
        },
    }


def _load(
    server: Server,
    singles: list[bytes],
    database_url: str,
    *,
    clients: int,
    seconds: float,
) -> dict[str, Any]:
    """One load run against one server: throughput, latency, and for a logging proxy what reached the log."""
    logged = server.name in ("proxy-on", "proxy-unbatched", "proxy-shadow", "proxy-canary")
    batched = server.name in ("proxy-on", "proxy-off", "proxy-shadow", "proxy-canary")
    shadowing, canary = server.name == "proxy-shadow", server.name == "proxy-canary"
    logging.info("load on %s: %d clients for %g s", server.name, clients, seconds)
    before = measure.histogram(server.url, "serving_batch_requests") if batched else {}
    shadowed = measure.counter(server.url, "serving_shadow_calls_total") if shadowing else {}
    mirrored = measure.counter(server.url, MIRROR) if canary else {}
    routed = measure.counter(server.url, ARMS, "arm") if canary else {}
    result = measure.load(server.url, singles, clients=clients, seconds=seconds, rss=server.rss_bytes)
    after = measure.histogram(server.url, "serving_batch_requests") if batched else {}
    if shadowing:  # Calls still queued finish after the clients stop: counted once the queue is empty.
        shadowed = measure.shadow_calls(server.url, shadowed, requests=len(result.answered))
    arms = None
    if canary:  # Requests each arm answered under this load; a mirror call (or drop) for each canary one.
        now = measure.counter(server.url, ARMS, "arm")
        arms = {arm: now.get(arm, 0.0) - routed.get(arm, 0.0) for arm in ("canary", "production")}
        mirrored = measure.shadow_calls(server.url, mirrored, requests=int(arms["canary"]), metric=MIRROR)
    counted = (
        count_logged(database_url, result.answered, rows_per_request=1, wait_seconds=120) if logged else None
    )
    return {
        "clients": clients,
        "requests": len(result.answered) + len(result.failures),
        "per_second": result.per_second,
        "ms": report.summary(result.latencies),
        "failed": len(result.failures),
        "first_failures": result.failures[:5],
        "answered": len(result.answered),
        "stored": counted.stored if counted else 0,
        "lost": counted.lost if counted else 0,
        "duplicated": counted.duplicated if counted else 0,
        "logged": logged,
        "merged_calls": measure.merged_calls(before, after) if batched else None,
        "shadow_calls": shadowed or None,
        "arms": arms,
        "mirror_calls": mirrored or None,
        "peak_rss_mib": result.peak_rss / report.MIB,
    }  # fmt: skip


MIRROR = "serving_canary_mirror_calls_total"
ARMS = "serving_canary_requests_total"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; one line and a non-zero status if it could not run."""
    given = sys.argv[1:] if argv is None else argv
    if "--batch" in given:  # Batch scoring on Spark: its own sizes, figures and report (bench/BATCH.md).
        from bench import batch

        return batch.main([part for part in given if part != "--batch"])
    if "--log-scale" in given:  # Monitoring over a large log: its own sizes and report (bench/LOG_SCALE.md).
        from bench import logscale

        return logscale.main([part for part in given if part != "--log-scale"])
    args = parse_args(argv)
    quiet_logging()
    settings = {
        k: getattr(args, k) for k in ("rounds", "batches", "batch_rows", "load_seconds", "clients", "workers")
    } | {"sweep": list(args.sweep), "sweep_seconds": SWEEP_SECONDS}
    try:
        with scratch("bench", args.database_url) as (workdir, url):
            figures = run(args, workdir, url)
    except SQLAlchemyError as exc:
        return fail(f"--database-url: {first_line(exc)}")
    except (ServerError, measure.MeasurementError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    results = {
        "command": shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(terse=True),
            "python": platform.python_version(),
        },
        "settings": settings,
        **figures,
    }
    met = report.goals(results)
    print(report.write(results, met, args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
