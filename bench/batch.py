"""Batch scoring on Spark against one in-process pyfunc: `python -m bench --batch [--rows N]`.

Every run scores the same Parquet file (the attrition data resampled) with the same registered
version, each in its own process, timed from start to end (model loading and Spark's start-up
included); the peak memory is that of the process and every child it starts (JVM, Python workers;
on the standalone cluster, also its master, its workers and their executors).
One process calls `predict` on chunks of 10,000 rows; `python -m serving.batch` runs the Arrow
path on `local[2]` and on a standalone cluster of two one-core workers, and `spark_udf` on
`local[2]`. The same again on more rows shows whether memory grows with the row count.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from bench.logcheck import quiet_logging
from registry_scripts.cli import fail

logger = logging.getLogger(__name__)
DATA = Path(__file__).resolve().parent.parent / "data" / "attrition.csv"
GROUP_ROWS = 100_000  # Parquet row groups: what Spark splits a file by.
CHUNK_ROWS = 10_000  # The in-process side's chunks; Spark's Arrow batches are as large by default.
GOAL_RATIO = 1.3
GOAL_MEMORY_GROWTH = 1.0  # Bounded: the larger run takes no more memory than the smaller.

IN_PROCESS = """
import sys, time, mlflow, pyarrow.parquet as pq
start = time.perf_counter()
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = 0
for batch in pq.ParquetFile(sys.argv[2]).iter_batches(batch_size=int(sys.argv[3])):
    rows += len(model.predict(batch.to_pandas()))
print(rows, time.perf_counter() - start)
"""

# Where one row's time goes on one core (OMP_NUM_THREADS=1, as Spark runs each task), over the first
# chunks of the data: the pyfunc's predict, MLflow's conversion of its answer to `spark_udf`'s struct
# (a Python call per contribution) and the Arrow table Spark receives; the Arrow path's `columns`
# and the struct it builds from them.
PER_ROW = """
import json, sys, time, mlflow, pyarrow as pa, pyarrow.parquet as pq
from mlflow.pyfunc import _convert_struct_values
from pyspark.sql.pandas.types import to_arrow_type
from serving.batch.arrow import _struct
from serving.batch.columns import result_type
model = mlflow.pyfunc.load_model(sys.argv[1])
python_model = model.unwrap_python_model()
struct = result_type(model.metadata.get_output_schema(), leave_out={"employee_id"})
spent = {"predict": 0.0, "udf_conversion": 0.0, "arrow": 0.0, "columns": 0.0, "struct": 0.0}
rows = 0
for batch in pq.ParquetFile(sys.argv[2]).iter_batches(batch_size=int(sys.argv[3])):
    if rows >= int(sys.argv[4]):
        break
    a = time.perf_counter()
    answer = model.predict(batch.to_pandas())
    b = time.perf_counter()
    converted = _convert_struct_values(answer.drop(columns=["employee_id"]), struct)
    c = time.perf_counter()
    pa.Table.from_pandas(converted, preserve_index=False)
    d = time.perf_counter()
    columns = python_model.columns(batch.to_pandas())
    e = time.perf_counter()
    _struct(columns, python_model.features, to_arrow_type(struct))
    f = time.perf_counter()
    rows += len(answer)
    for key, seconds in zip(spent, (b - a, c - b, d - c, e - d, f - e)):
        spent[key] += seconds
print(json.dumps({key: 1e6 * seconds / rows for key, seconds in spent.items()}))
"""
PER_ROW_ROWS = 100_000


@dataclass(frozen=True)
class Side:
    """One measured run: rows, seconds from start to end, rows/s and peak memory of its processes."""

    name: str
    rows: int
    seconds: float
    rows_per_second: float
    peak_rss_mib: float


def resampled(rows: int, path: Path, *, seed: int = 0) -> Path:
    """The attrition data resampled to `rows` rows with unique ids, written group by group."""
    source = pd.read_csv(DATA).drop(columns=["Attrition"])
    generator = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, GROUP_ROWS):
            count = min(GROUP_ROWS, rows - start)
            group = source.iloc[generator.integers(0, len(source), count)].reset_index(drop=True)
            group["employee_id"] = np.arange(start + 1, start + count + 1)
            table = pa.Table.from_pandas(group, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=GROUP_ROWS)
    finally:
        if writer is not None:
            writer.close()
    return path


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for each in [process, *process.children(recursive=True)]:
        try:
            total += each.memory_info().rss
        except psutil.Error:
            continue
    return total


def measured(
    name: str,
    command: list[str],
    rows: int,
    *,
    env: dict[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
    also: tuple[int, ...] = (),
) -> Side:
    """Run a command, sampling the memory of it and its children; its wall time and peak.

    `ok`: the exit statuses that mean it ran (a monitoring job says 1 when it finds something);
    `also`: processes whose trees count too (a cluster's master and workers, with their executors).
    """
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        processes = [psutil.Process(pid) for pid in (child.pid, *also)]
        while not done.is_set():
            try:
                peak = max(peak, sum(_tree_rss(process) for process in processes))
            except psutil.Error:
                return
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = child.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if child.returncode not in ok:
        raise RuntimeError(f"{name} failed ({child.returncode}): {err.strip().splitlines()[-1:]}")
    logger.info("%s: %d rows in %.1f s", name, rows, seconds)
    return Side(name, rows, seconds, rows / seconds, peak / 2**20)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench --batch", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows both sides score (1,000,000)")
    parser.add_argument(
        "--memory-rows", type=int, default=5_000_000, help="rows of the second Spark run (5,000,000; 0: none)"
    )
    parser.add_argument("--master", default="local[2]", help="Spark master (local[2])")
    parser.add_argument("--trials", type=int, default=None, help="search trials for the model (config's)")
    parser.add_argument(
        "--output-dir", type=Path, default=Path(__file__).resolve().parent, help="where results go (bench/)"
    )
    args = parser.parse_args(argv)
    if args.rows <= 0 or args.memory_rows < 0:
        parser.error("--rows must be > 0 and --memory-rows >= 0")
    return args


def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    """Train, write the data, measure every way of scoring it on both row counts."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir}/mlflow.db"
    os.chdir(workdir)  # The model's artifacts go to ./mlruns here.
    from bench.servers import spark_cluster
    from training.config import load_config
    from training.job import train

    outcome = train(load_config("attrition"), trials=args.trials)
    uri = f"models:/attrition/{outcome.version}"
    python = sys.executable

    def batch(rows: int, path: Path, name: str, master: str, scorer: str) -> Side:
        pids = [server.process.pid for server in cluster.servers if server.process]
        return measured(
            f"{name}, {rows:,} rows",
            [python, "-m", "serving.batch", "--model", "attrition", "--version", outcome.version,
             "--input", str(path), "--output", str(workdir / f"scored-{rows}-{name.replace(' ', '-')}"),
             "--master", master, "--scorer", scorer],
            rows, also=tuple(pids) if master == cluster.url else (),
        )  # fmt: skip

    cluster = spark_cluster(workdir / "cluster", workers=2, cores=1)
    sizes: dict[str, dict[str, object]] = {}
    try:
        for seed, rows in enumerate(count for count in (args.rows, args.memory_rows) if count):
            data = resampled(rows, workdir / f"rows-{rows}.parquet", seed=seed)
            sides = [
                measured(f"one process, {rows:,} rows",
                         [python, "-c", IN_PROCESS, uri, str(data), str(CHUNK_ROWS)], rows),
                batch(rows, data, "arrow local[2]", "local[2]", "arrow"),
                batch(rows, data, "arrow standalone 2x1", cluster.url, "arrow"),
                batch(rows, data, "spark_udf local[2]", "local[2]", "spark_udf"),
            ]  # fmt: skip
            sizes[str(rows)] = {key: asdict(side) for key, side in zip(SIDES, sides, strict=True)}
            data.unlink()
    finally:
        cluster.stop()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sample = resampled(PER_ROW_ROWS, workdir / "sample.parquet", seed=2)
    costs = json.loads(
        subprocess.run(
            [python, "-c", PER_ROW, uri, str(sample), str(CHUNK_ROWS), str(PER_ROW_ROWS)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]
    )  # fmt: skip
    first = sizes[str(args.rows)]
    last = sizes[str(args.memory_rows)] if args.memory_rows else None
    return {
        "sizes": sizes,
        "ratio": _rate(first["arrow"]) / _rate(first["in_process"]),
        "per_row_us": costs,
        "memory_growth": _peak(last["arrow"]) / _peak(first["arrow"]) if last else None,
    }


SIDES = ("in_process", "arrow", "arrow_cluster", "spark_udf")


def _rate(side: object) -> float:
    assert isinstance(side, dict)
    return float(side["rows_per_second"])


def _peak(side: object) -> float:
    assert isinstance(side, dict)
    return float(side["peak_rss_mib"])


def report(results: dict[str, object]) -> str:
    """The figures as a Markdown table, with the two goals."""
    sizes = results["sizes"]
    assert isinstance(sizes, dict)
    lines = [
        f"# Batch scoring benchmark ({results['finished_at']}, {results['cpus']} CPUs)",
        "",
        f"`{results['command']}`",
        "",
        "| run | rows | seconds | rows/s | / one process | peak memory (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for found in sizes.values():
        lines += [
            f"| {s['name']} | {s['rows']:,} | {s['seconds']:.1f} | {s['rows_per_second']:,.0f} "
            f"| {s['rows_per_second'] / one:.2f} | {s['peak_rss_mib']:,.0f} |"
            for s in (found[key] for key in SIDES)
            if (one := found["in_process"]["rows_per_second"])
        ]
    ratio, growth, costs = results["ratio"], results["memory_growth"], results["per_row_us"]
    assert isinstance(ratio, float) and isinstance(costs, dict)
    lines += [
        "",
        f"- Arrow path on `local[2]` / one process, rows/s: **{ratio:.2f}x** (goal >= {GOAL_RATIO}x; "
        "2 cores make 2x the ceiling): " + ("met" if ratio >= GOAL_RATIO else "NOT met"),
    ]
    if isinstance(growth, float):
        lines.append(
            f"- Arrow path's peak memory, more rows / fewer: **{growth:.2f}x** (goal <= "
            f"{GOAL_MEMORY_GROWTH}x): " + ("met" if growth <= GOAL_MEMORY_GROWTH else "NOT met")
        )
    lines.append(
        f"- One row on one core (microseconds): `predict` {costs['predict']:.1f}, then `spark_udf`'s "
        f"conversion of its answer {costs['udf_conversion']:.1f}; the Arrow path's `columns` "
        f"{costs['columns']:.1f} and its struct {costs['struct']:.1f}."
    )
    return "\n".join(lines) + "\n"


def publish(results: Mapping[str, object], text: str, directory: Path, *, data: str, page: str) -> None:
    """Write the figures (`data`, JSON) and their report (`page`, Markdown) into `directory`; print it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / data).write_text(json.dumps(results, indent=2) + "\n")
    (directory / page).write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> int:
    """Run the batch benchmark; write batch_results.json and BATCH.md."""
    args = parse_args(argv)
    quiet_logging()
    here = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        try:
            figures = run(args, Path(tmp))
        except RuntimeError as exc:
            return fail(str(exc))
        finally:
            os.chdir(here)
    results: dict[str, object] = {
        "command": " ".join(["python", "-m", "bench", "--batch", *(sys.argv[1:] if argv is None else argv)]),
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        **figures,
    }
    publish(results, report(results), args.output_dir, data="batch_results.json", page="BATCH.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
