"""The compare job: the served version against the challenger that shadowed it, reported three ways."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from sqlalchemy import Engine

from monitoring import logged, reference
from monitoring.challenger import CompareThresholds, Shadowed
from monitoring.errors import MonitoringError
from monitoring.report import STYLE, paired_scores_plot, table
from monitoring.report_run import ReportOutcome, ReportRun, finite, window
from registry_scripts.reports import CompareSummary

MAX_PLOTTED = 20_000
EXIT_CODES = {"no objection": 0, "objection": 1, "not enough data": 2}


class CompareOutcome(ReportOutcome):
    """A comparison's report; its verdict is the exit status."""

    @property
    def exit_code(self) -> int:
        """0 no objection, 1 objection, 2 not enough data."""
        return EXIT_CODES[self.summary["verdict"]]


def _pair(engine: Engine, model: str, since: datetime | None, until: datetime | None) -> tuple[int, int]:
    """The (served, challenger) pair of versions with the most shadowed rows in the window."""
    sizes = logged.shadow_pairs(engine, model_name=model, since=since, until=until)
    if not sizes:
        raise MonitoringError(f"model {model!r} has no shadowed rows in the window (serve with --shadow)")
    return max(sizes, key=lambda pair: (sizes[pair], pair))


def run(
    client: MlflowClient,
    engine: Engine,
    *,
    model: str,
    since: datetime | None,
    until: datetime | None,
    out: Path,
    thresholds: CompareThresholds,
) -> CompareOutcome:
    """Compare, write the HTML report and JSON summary, and log both to a run on the challenger."""
    champion, challenger = _pair(engine, model, since, until)
    folded = Shadowed()
    for chunk in logged.shadowed(
        engine, model_name=model, champion=champion, challenger=challenger, since=since, until=until
    ):
        folded.add(chunk)
    facts = reference.facts(client, model, champion)
    challenger_facts = reference.facts(client, model, challenger)
    created = datetime.now(UTC)
    summary: dict[str, Any] = {
        "model": model,
        "champion_version": champion,
        "challenger_version": challenger,
        "created_at": created.isoformat(timespec="seconds"),
        "window": window(folded.span, since, until),
        "thresholds": thresholds.model_dump(),
        **folded.summary(costs=facts.costs, thresholds=thresholds),
    }
    # Checked against the contract serving reads back (`GET /challenger`) before anything is written.
    summary = CompareSummary.model_validate(finite(summary)).model_dump(mode="json", exclude={"run_id"})
    found = _report_run(summary, challenger_facts.experiment_id).publish(
        out, created, summary, _render(summary, folded)
    )
    return CompareOutcome(found.summary, found.directory, found.run_id)


def _render(summary: dict[str, Any], folded: Shadowed) -> str:
    """One offline page: the verdict, the figures, the score scatter and the flipped rows."""
    verdict = summary["verdict"]
    why = "; ".join(summary["reasons"]) or "every check passed"
    parts = [
        f"<h1>{html.escape(summary['model'])}: version {summary['challenger_version']} (challenger) "
        f"against version {summary['champion_version']} (served)</h1>",
        f"<p>{summary['rows']} shadowed rows answered, logged from {summary['window']['first']} "
        f"to {summary['window']['last']}</p>",
        f'<p class="verdict {"good" if verdict == "no objection" else "bad"}">{html.escape(verdict)}: '
        f"{html.escape(why)}</p>",
    ]
    for section in ("decisions", "scores", "top_reasons"):
        if summary.get(section):
            figures = [{"figure": key.replace("_", " "), "value": v} for key, v in summary[section].items()]
            parts.append(f"<h2>{section.replace('_', ' ')}</h2>{table(figures, ['figure', 'value'])}")
    for section, title in (("latency_ms", "latency (ms)"), ("realised", "realised, on the labelled rows")):
        found = summary.get(section)
        if found:
            sides = [
                {"figure": key.replace("_", " "), "served": value, "challenger": found["challenger"][key]}
                for key, value in found["champion"].items()
            ]
            parts.append(f"<h2>{title}</h2>{table(sides, ['figure', 'served', 'challenger'])}")
    auc = (summary.get("realised") or {}).get("auc_difference")
    if auc:
        parts.append(
            f"<p>Challenger's ROC AUC minus the served one's: {auc['difference']:+.4f}, 95% paired bootstrap "
            f"interval [{auc['low']:+.4f}, {auc['high']:+.4f}] ({auc['rounds']} resamples); "
            f"{summary.get('labelled', 0)} labelled rows.</p>"
        )
    served, shadow = folded.column("score"), folded.column("shadow_score")
    if len(served):
        # A scatter of a million points says no more than one of an evenly spaced 20,000.
        every = max(1, len(served) // MAX_PLOTTED)
        plot = paired_scores_plot(
            served[::every],
            shadow[::every],
            (
                f"served version {summary['champion_version']}",
                f"challenger version {summary['challenger_version']}",
            ),
        )
        parts.append(f"<h2>scores</h2>{plot}")
    flips = summary.get("flipped", [])
    if flips:
        lines = "".join(
            f"<tr><td>{f['request_id']}</td><td>{f['row_index']}</td><td>{f['score']:.3f}</td>"
            f"<td>{f['shadow_score']:.3f}</td><td>{html.escape(', '.join(f['reasons']))}</td>"
            f"<td>{html.escape(', '.join(f['shadow_reasons']))}</td></tr>"
            for f in flips
        )
        parts.append(
            "<h2>rows whose decision flips</h2><table><tr><th>request</th><th>row</th><th>served score</th>"
            "<th>challenger score</th><th>served reasons</th><th>challenger reasons</th></tr>"
            f"{lines}</table>"
        )
    return f"<!doctype html><meta charset=utf-8><title>compare</title><style>{STYLE}</style>{''.join(parts)}"


def _report_run(summary: dict[str, Any], experiment_id: str) -> ReportRun:
    metrics = {
        "rows": summary["rows"],
        "shadow_errors": summary["shadow_errors"],
        "labelled": summary.get("labelled") or 0,
        **{f"decisions.{k}": v for k, v in (summary.get("decisions") or {}).items()},
        **{f"scores.{k}": v for k, v in (summary.get("scores") or {}).items()},
        **{f"top_reasons.{k}": v for k, v in (summary.get("top_reasons") or {}).items()},
    }
    realised = summary.get("realised") or {}
    for side in ("champion", "challenger"):
        metrics.update({f"realised.{side}.{k}": v for k, v in (realised.get(side) or {}).items()})
    metrics.update(
        {f"realised.auc_difference.{k}": v for k, v in (realised.get("auc_difference") or {}).items()}
    )
    return ReportRun(
        kind="compare",
        name=f"compare-{summary['model']}-v{summary['challenger_version']}-vs-v{summary['champion_version']}",
        experiment_id=experiment_id,
        tags={
            "model_name": summary["model"],
            "model_version": str(summary["challenger_version"]),
            "champion_version": str(summary["champion_version"]),
            "verdict": summary["verdict"],
        },
        params={f"threshold.{k}": v for k, v in summary["thresholds"].items()},
        metrics=metrics,
    )
