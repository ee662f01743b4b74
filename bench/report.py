"""Figures, goals and the tables the benchmark prints and writes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

MIB = 2**20


def summary(times_ms: list[float]) -> dict[str, float]:
    """Median, p99 and count of latencies in milliseconds."""
    values = np.asarray(times_ms, dtype=np.float64)
    return {"median": float(np.median(values)), "p99": float(np.percentile(values, 99)), "n": len(values)}


@dataclass(frozen=True)
class Goal:
    """One goal of the issue, its measured value and whether it is met."""

    number: str
    name: str
    value: float
    op: str
    limit: float

    @property
    def passed(self) -> bool:
        """Whether the measured value meets the goal."""
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit


def goals(results: dict[str, Any]) -> list[Goal]:
    """The goals, from the measured figures."""
    single, batch, load, wide = (
        results["single_row_ms"], results["batch"], results["load"], results["wide_body"]
    )  # fmt: skip
    ours, proxy = single["ours_direct"], single["ours_proxy"]
    median, p99 = "median", "p99"
    clients = load["on"].get("clients", 16)
    return [
        Goal(
            "1", "our model / constant pyfunc, median", ours[median] / single["constant"][median], "<=", 1.3
        ),
        Goal("2a", "proxy with logging / direct, median", proxy[median] / ours[median], "<=", 1.25),
        Goal("2b", "proxy with logging / direct, p99", proxy[p99] / ours[p99], "<=", 1.5),
        Goal(
            "3",
            "seed-style pyfunc / our model, median",
            single["seed_style"][median] / ours[median],
            ">=",
            2.0,
        ),
        Goal(
            "5a",
            "log rows lost + duplicated under load",
            load["on"]["lost"] + load["on"]["duplicated"],
            "<=",
            0,
        ),
        Goal(
            "5b",
            "requests/s under load, logging on / off",
            load["on"]["per_second"] / load["off"]["per_second"],
            ">=",
            0.9,
        ),
        Goal(
            "6",
            "one-row median while a 14 MB body is refused / alone",
            wide["during_ms"][median] / wide["alone_ms"][median],
            "<=",
            2.0,
        ),
        Goal(
            "7",
            f"{clients} clients, requests/s: proxy with batching / bare `mlflow models serve`",
            load["on"]["per_second"] / load["bare"]["per_second"],
            ">=",
            4.0,
        ),
        Goal(
            "8",
            f"{clients} clients, p99: proxy with batching / bare `mlflow models serve`",
            load["on"]["ms"][p99] / load["bare"]["ms"][p99],
            "<=",
            1.0,
        ),
        Goal("9", "1 client, median: proxy with batching / direct", proxy[median] / ours[median], "<=", 1.2),
        Goal(
            "10",
            "1,000-row batch, median: proxy / direct",
            batch["proxy_ms"][median] / batch["direct_ms"][median],
            "<=",
            1.15,
        ),
        *(
            Goal(
                number,
                f"{clients} clients, requests/s: {what}",
                load[arm]["per_second"] / load["on"]["per_second"],
                ">=",
                0.8,
            )
            for number, arm, what in (
                ("11", "shadow", "shadow scoring on / off (its backend on the same cores)"),
                ("12", "canary", "canary at 50% / none (both backends on the same cores)"),
            )
            if arm in load
        ),
    ]


LOADED = {
    "bare": "bare `mlflow models serve`",
    "unbatched": "proxy, batching off, logging on",
    "on": "proxy, batching on, logging on",
    "off": "proxy, batching on, logging off",
    "shadow": "proxy, batching on, logging on, shadow-scoring `@staging`",
    "canary": "proxy, batching on, logging on, `@canary` answering 50% of people",
}


def _load_row(name: str, run: dict[str, Any]) -> str:
    merged = run.get("merged_calls")
    cells = [
        LOADED[name],
        f"{run['per_second']:.1f}",
        f"{run['ms']['median']:.1f}",
        f"{run['ms']['p99']:.1f}",
        str(run["failed"]),
        f"{run['stored']:,} of {run['answered']:,}" if run.get("logged") else "not logged",
        str(run["lost"]) if run.get("logged") else "",
        str(run["duplicated"]) if run.get("logged") else "",
        f"{merged['mean']:.1f}" if merged else "",
        f"{run['peak_rss_mib']:.0f} MiB" if run["peak_rss_mib"] else "",
    ]
    return "| " + " | ".join(cells) + " |"


def _merged_line(run: dict[str, Any]) -> str:
    merged = run["merged_calls"]
    shares = ", ".join(f"{label}: {share:.0%}" for label, share in merged["shares"].items() if share)
    return (
        f"Requests per backend call, proxy with batching and logging: {merged['calls']:,.0f} calls for "
        f"{merged['requests']:,.0f} requests, {merged['mean']:.1f} on average ({shares})."
    )


def _canary_line(run: dict[str, Any]) -> str:
    arms = run["arms"]
    return (
        f"Canary: of {run['answered']:,} requests answered, {arms.get('canary', 0):,.0f} went to `@canary` "
        f"and {arms.get('production', 0):,.0f} to production (by each person's hashed id; the bench's 200 "
        "people, each in one arm); each canary answer is scored again by production after the answer"
        + (
            f" ({mirror['ok']:,.0f} were, {mirror['dropped']:,.0f} dropped with the queue full, "
            f"{mirror['failed']:,.0f} failed)"
            if (mirror := run.get("mirror_calls"))
            else ""
        )
        + ", and its peak RSS includes the canary's backend."
    )


def _shadow_line(run: dict[str, Any]) -> str:
    calls = run["shadow_calls"]
    return (
        f"Shadow scoring: of {calls['requests']:,.0f} requests answered, {calls['ok']:,.0f} were also scored "
        f"by the challenger's own `mlflow models serve`, {calls['dropped']:,.0f} dropped (queue full) and "
        f"{calls['failed']:,.0f} failed; its peak RSS includes that second backend."
    )


def _log_work_line(batch: dict[str, Any]) -> str:
    direct, unlogged = batch["direct_ms"]["median"], batch["unlogged_ms"]["median"]
    return (
        f"Through the proxy with logging off, a 1,000-row batch takes {unlogged / direct:.2f} times direct. "
        f"Logging one such answer (the writer's parsing and the database's COPY of 1,000 rows with their "
        f"inputs and contributions, timed alone) takes {batch['log_work_ms']['median']:.1f} ms, against "
        f"{direct:.1f} ms for the backend to score it; here both share the same cores."
    )


def _sweep_rows(sweep: dict[str, dict[str, Any]]) -> list[str]:
    rows = []
    for clients, runs in sweep.items():
        cells = [clients] + [
            f"{runs[name]['per_second']:.1f} / {runs[name]['ms']['p99']:.1f}"
            for name in ("bare", "unbatched", "on")
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _goal_row(goal: Goal) -> str:
    verdict = "pass" if goal.passed else "FAIL"
    return f"| {goal.number}. {goal.name} | {goal.value:.2f} | {goal.op} {goal.limit:g} | {verdict} |"


def markdown(results: dict[str, Any], met: list[Goal]) -> str:
    """The results as Markdown tables."""
    single, batch, load, memory = (
        results["single_row_ms"],
        results["batch"],
        results["load"],
        results["memory_mib"],
    )
    settings, model, wide = results["settings"], results["model"], results["wide_body"]
    labels = {
        "constant": "`mlflow models serve`, constant pyfunc (MLflow's floor)",
        "seed_style": "`mlflow models serve`, seed-style pyfunc (ColumnTransformer, TreeExplainer, loops)",
        "ours_direct": "`mlflow models serve`, our model",
        "ours_proxy": "our proxy, logging to PostgreSQL, in front of that same server",
    }
    lines = [
        f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['platform']}, "
        f"Python {results['machine']['python']}; {results['finished_at']}.",
        f"Our model: attrition as trained by `python -m training`, XGBoost {model['trees']} trees of depth "
        f"<= {model['max_depth']}; seed-style: {model['seed_style_trees']} trees of depth "
        f"{model['seed_style_depth']}; {model['features']} raw features; every answer carries all "
        f"contributions; {settings['workers']} worker(s) per model server.",
        "",
        f"Single row, {settings['rounds']} requests to each server, interleaved:",
        "",
        "| server | median ms | p99 ms |",
        "|---|---:|---:|",
        *(f"| {labels[k]} | {single[k]['median']:.2f} | {single[k]['p99']:.2f} |" for k in labels),
        "",
        f"Batches of {settings['batch_rows']:,} rows with explanations, {settings['batches']} requests:",
        "",
        "| path | rows/s | median ms |",
        "|---|---:|---:|",
        f"| in process: the booster's prediction + TreeSHAP only | {batch['in_process_rows_per_s']:,.0f} | |",
        f"| `mlflow models serve`, constant pyfunc (MLflow's floor) | {batch['constant_rows_per_s']:,.0f} "
        f"| {batch['constant_ms']['median']:.1f} |",
        f"| `mlflow models serve`, our model | {batch['direct_rows_per_s']:,.0f} "
        f"| {batch['direct_ms']['median']:.1f} |",
        f"| our proxy, logging on | {batch['proxy_rows_per_s']:,.0f} "
        f"| {batch['proxy_ms']['median']:.1f} |",
        *([f"| our proxy, logging off | {batch['unlogged_rows_per_s']:,.0f} "
           f"| {batch['unlogged_ms']['median']:.1f} |"] if "unlogged_ms" in batch else []),
        *(["", _log_work_line(batch)] if "log_work_ms" in batch else []),
        "",
        f"Load: {settings['clients']} concurrent clients for {settings['load_seconds']:g} s, one row per "
        f"request, {settings['workers']} backend worker(s) everywhere; absolute figures scale with the "
        "machine's cores, the ratios are the goals:",
        "",
        "| server | requests/s | median ms | p99 ms | failed | rows stored | lost | duplicated "
        "| requests per call | peak RSS, proxy + backend |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_load_row(name, load[name]) for name in LOADED if name in load),
        "",
        _merged_line(load["on"]),
        "",
        *([_shadow_line(load["shadow"]), ""] if "shadow" in load else []),
        *([_canary_line(load["canary"]), ""] if "canary" in load and load["canary"].get("arms") else []),
        *([f"Other client counts, {settings['sweep_seconds']:g} s each: requests/s / p99 ms:", "",
           "| clients | bare `mlflow models serve` | proxy, batching off | proxy, batching on |",
           "|---:|---:|---:|---:|", *_sweep_rows(results["sweep"]), ""] if results.get("sweep") else []),
        f"One-row requests, one after another, alone and while a {wide['bytes'] / 1e6:.1f} MB body with "
        "a million unknown columns is read, checked and refused (issue 16):",
        "",
        "| one-row requests | n | median ms | p99 ms |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {wide[key]['n']} | {wide[key]['median']:.1f} | {wide[key]['p99']:.1f} |"
          for name, key in (("alone", "alone_ms"), ("while refusing", "during_ms"))),
        "",
        "Memory after warm-up (RSS, MiB): "
        + ", ".join(f"{name} {value:.0f}" for name, value in memory.items())
        + ".",
        "",
        "| goal | measured | target | |",
        "|---|---:|---:|---|",
        *(_goal_row(goal) for goal in met),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], met: list[Goal], directory: Path) -> str:
    """Write `results.json` and `RESULTS.md` into `directory`; return the Markdown."""
    directory.mkdir(parents=True, exist_ok=True)
    document = {**results, "goals": [{**asdict(g), "passed": g.passed} for g in met]}
    (directory / "results.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    text = markdown(results, met)
    command = results["command"]
    (directory / "RESULTS.md").write_text(f"# Benchmark results\n\n`{command}`\n\n{text}", encoding="utf-8")
    return text
