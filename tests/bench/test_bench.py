"""The benchmark itself works end to end: a tiny `--quick` run builds, serves, measures and reports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bench import batch
from bench.__main__ import parse_args
from bench.report import goals
from tests.conftest import POSTGRES_ADMIN, subprocess_env


def _exists(database: str) -> bool:
    # Only the benchmark's own database is looked at: other jobs share this PostgreSQL server.
    engine = create_engine(POSTGRES_ADMIN)
    with engine.connect() as connection:
        query = text("SELECT count(*) FROM pg_database WHERE datname = :name")
        found = connection.execute(query, {"name": database}).scalar_one()
    engine.dispose()
    return bool(found)


@pytest.mark.integration
def test_a_tiny_quick_run_measures_everything_and_writes_its_results(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "bench", "--quick", "--rounds", "15", "--batches", "2", "--batch-rows", "50",
        "--load-seconds", "2", "--clients", "4", "--trials", "2", "--cv-folds", "2",
        "--database-url", POSTGRES_ADMIN, "--output-dir", str(tmp_path),
    ]  # fmt: skip
    env = subprocess_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    single = results["single_row_ms"]
    assert set(single) == {"constant", "seed_style", "ours_direct", "ours_proxy"}
    assert all(s["n"] == 15 and 0 < s["median"] <= s["p99"] for s in single.values())
    assert results["batch"]["proxy_rows_per_s"] > 0 and results["batch"]["in_process_rows_per_s"] > 0
    on, off = results["load"]["on"], results["load"]["off"]
    assert on["answered"] > 0 and on["failed"] == 0
    assert on["stored"] == on["answered"] and on["lost"] == 0 and on["duplicated"] == 0
    assert off["answered"] > 0 and off["stored"] == 0  # Logging off stores nothing.
    assert on["peak_rss_mib"] > 100 and all(value > 50 for value in results["memory_mib"].values())
    assert [g["number"] for g in results["goals"]] == [
        "1",
        "2a",
        "2b",
        "3",
        "5a",
        "5b",
        "6",
        "7",
        "8",
        "9",
        "10",
        "11",
        "12",
    ]
    canary = results["load"]["canary"]  # The same model again as @canary at 50%, with its own backend.
    assert canary["answered"] > 0 and canary["failed"] == 0 and canary["stored"] == canary["answered"]
    assert canary["arms"]["canary"] > 0 and canary["arms"]["production"] > 0
    assert sum(canary["arms"].values()) == canary["answered"]
    mirror = canary["mirror_calls"]  # Production scored the canary's answers again, or dropped them.
    assert mirror["ok"] + mirror["dropped"] + mirror["failed"] == mirror["requests"]
    assert mirror["requests"] == canary["arms"]["canary"]
    assert mirror["ok"] > 0 and mirror["failed"] == 0
    shadow = results["load"]["shadow"]  # The same model again as @staging, scored by its own backend.
    assert shadow["answered"] > 0 and shadow["failed"] == 0 and shadow["stored"] == shadow["answered"]
    calls = shadow["shadow_calls"]
    assert calls["ok"] + calls["dropped"] + calls["failed"] == calls["requests"] == shadow["answered"]
    assert calls["ok"] > 0 and calls["failed"] == 0
    bare, unbatched = results["load"]["bare"], results["load"]["unbatched"]
    assert (
        bare["answered"] > 0 and bare["failed"] == 0 and not bare["logged"] and bare["merged_calls"] is None
    )
    assert unbatched["stored"] == unbatched["answered"] > 0 and unbatched["merged_calls"] is None
    assert on["merged_calls"]["requests"] == on["answered"]  # Every one-row request went through the batcher.
    assert results["sweep"] == {}  # --quick measures no other client counts.
    wide = results["wide_body"]
    assert wide["bytes"] > 13 * 2**20 and wide["alone_ms"]["n"] == 15 and wide["during_ms"]["n"] > 0
    table = (tmp_path / "RESULTS.md").read_text()
    assert "| goal | measured | target |" in table and table.count("| pass |") + table.count("| FAIL |") == 13
    assert "Requests per backend call, proxy with batching and logging: " in table
    assert "Logging one such answer" in table and results["batch"]["log_work_ms"]["n"] == 2
    assert "Shadow scoring: of " in table
    assert "| goal | measured | target |" in done.stdout
    [database] = re.findall(r"scratch database (bench_[0-9a-f]{12}) created", done.stderr)
    assert not _exists(database)  # Its scratch log database is dropped.
    assert not (tmp_path / "mlflow.db").exists()  # Its MLflow store was a temporary directory.


def test_goals_compare_the_right_figures() -> None:
    figure = {"median": 10.0, "p99": 20.0, "n": 1}
    results: dict[str, Any] = {
        "single_row_ms": {
            "constant": figure,
            "ours_direct": {"median": 12.0, "p99": 20.0, "n": 1},
            "ours_proxy": {"median": 15.5, "p99": 31.0, "n": 1},
            "seed_style": {"median": 24.0, "p99": 40.0, "n": 1},
        },
        "batch": {"proxy_ms": {"median": 115.0}, "direct_ms": {"median": 100.0}},
        "load": {
            "on": {"per_second": 90.0, "lost": 0, "duplicated": 1, "ms": {"p99": 50.0}, "clients": 16},
            "off": {"per_second": 100.0},
            "bare": {"per_second": 22.0, "ms": {"p99": 49.0}},
        },
        "wide_body": {"alone_ms": {"median": 10.0}, "during_ms": {"median": 25.0}},
    }
    verdicts = {g.number: (round(g.value, 3), g.passed) for g in goals(results)}
    assert verdicts == {
        "1": (1.2, True), "2a": (1.292, False), "2b": (1.55, False), "3": (2.0, True),
        "5a": (1.0, False), "5b": (0.9, True), "6": (2.5, False), "7": (4.091, True), "8": (1.02, False),
        "9": (1.292, False), "10": (1.15, True),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "--rounds"),
        (["--batch-rows", "5000"], "--batch-rows"),
        (["--cv-folds", "1"], "--cv-folds"),
        (["--sweep", "1,x"], "--sweep"),
        (["--sweep", "0"], "--sweep"),
    ],
)
def test_bad_options_are_named(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_quick_changes_only_the_sizes_not_given() -> None:
    quick = parse_args(["--quick", "--rounds", "7"])
    assert (quick.rounds, quick.batches, quick.load_seconds, quick.trials, quick.wide_bodies) == (
        7,
        5,
        15.0,
        5,
        1,
    )
    full = parse_args([])
    assert (full.rounds, full.batches, full.load_seconds, full.trials, full.wide_bodies) == (
        1000,
        20,
        60.0,
        None,
        3,
    )


@pytest.mark.integration
def test_a_tiny_log_scale_run_measures_every_job_at_every_size(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "bench", "--log-scale", "--sizes", "1000,3000", "--trials", "1",
        "--database-url", POSTGRES_ADMIN, "--output-dir", str(tmp_path),
    ]  # fmt: skip
    env = subprocess_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((tmp_path / "log_scale_results.json").read_text())
    runs = {(run["name"], run["rows"]) for run in results["runs"]}
    assert runs == {(job, rows) for job in ("drift", "compare", "fairness") for rows in (1000, 3000)}
    assert all(run["seconds"] > 0 and run["peak_rss_mib"] > 100 for run in results["runs"])
    assert [goal["job"] for goal in results["goals"]] == ["drift", "compare", "fairness"]
    assert "| fairness | 3,000 |" in (tmp_path / "LOG_SCALE.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"), [(["--sizes", "10"], "at least 1000"), (["--sizes", "x"], "row counts")]
)
def test_bad_log_scale_sizes_are_named(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.logscale import parse_args as log_scale_args

    with pytest.raises(SystemExit) as stopped:
        log_scale_args(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_the_batch_report_compares_the_arrow_path_with_one_process_at_each_size() -> None:
    def side(name: str, rows: int, rate: float, peak: float) -> dict[str, object]:
        return {"name": name, "rows": rows, "seconds": rows / rate, "rows_per_second": rate,
                "peak_rss_mib": peak}  # fmt: skip

    sizes = {
        str(rows): {
            "in_process": side(f"one process, {rows:,} rows", rows, 20_000.0, 400.0),
            "arrow": side(f"arrow local[2], {rows:,} rows", rows, 30_000.0, peak),
            "arrow_cluster": side(f"arrow standalone 2x1, {rows:,} rows", rows, 28_000.0, 3000.0),
            "spark_udf": side(f"spark_udf local[2], {rows:,} rows", rows, 6_000.0, 2500.0),
        }
        for rows, peak in ((1_000_000, 2000.0), (5_000_000, 1900.0))
    }
    text = batch.report({
        "finished_at": "now", "cpus": 2, "command": "python -m bench --batch", "sizes": sizes,
        "ratio": 1.5, "memory_growth": 0.95,
        "per_row_us": {"predict": 48.0, "udf_conversion": 105.0, "arrow": 3.0, "columns": 40.0,
                       "struct": 2.0},
    })  # fmt: skip
    assert "| arrow local[2], 5,000,000 rows | 5,000,000 | 166.7 | 30,000 | 1.50 | 1,900 |" in text
    assert "| spark_udf local[2], 1,000,000 rows | 1,000,000 | 166.7 | 6,000 | 0.30 | 2,500 |" in text
    assert "**1.50x** (goal >= 1.3x" in text and "**0.95x** (goal <= 1.0x): met" in text
