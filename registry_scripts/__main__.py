"""Command line: `python -m registry_scripts promote|rollback|list|sync|rollout --model NAME ...`."""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
import threading
import warnings

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from logstore.database import first_line, make_engine
from logstore.errors import LogStoreError
from logstore.settings import LogStoreSettings, period
from registry_scripts import actions, rollout
from registry_scripts.access import configure_mlflow
from registry_scripts.cli import fail
from registry_scripts.errors import RegistryError
from registry_scripts.gates import holdout_auc
from registry_scripts.registry import GATES_TAG, VIA_TAG, versions
from registry_scripts.sync import HandConflict, pending, reconcile


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes"}:
        return True
    if lowered in {"0", "false", "no", ""}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _user() -> str:
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m registry_scripts",
        description="Promote, roll back and list model versions (stage and alias in step).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    promote = commands.add_parser("promote", help="move a version to staging or production")
    promote.add_argument("--model", required=True, help="registered model name")
    promote.add_argument("--version", required=True, help="version number or 'latest'")
    promote.add_argument("--to", required=True, choices=["staging", "production"], help="target stage")
    promote.add_argument(
        "--force",
        nargs="?",
        const=True,
        default=False,
        type=_flag,
        help="override the metric gate (never the load/explain gate)",
    )
    promote.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="how much lower than production's holdout ROC AUC is allowed (default 0.01)",
    )
    promote.add_argument("--reason", default="", help="why, recorded on the version")
    promote.add_argument("--user", default=None, help="who, recorded on the version (default: current user)")

    rollback = commands.add_parser(
        "rollback", help="restore the last production version before this one that passed the gates"
    )
    rollback.add_argument("--model", required=True, help="registered model name")
    rollback.add_argument(
        "--force",
        nargs="?",
        const=True,
        default=False,
        type=_flag,
        help="take the previous production version even if it reached Production without the gates",
    )
    rollback.add_argument("--reason", default="", help="why, recorded on the versions")
    rollback.add_argument("--user", default=None, help="who (default: current user)")

    listing = commands.add_parser("list", help="show versions, aliases, stages, gates and how each got there")
    listing.add_argument("--model", required=True, help="registered model name")

    sync = commands.add_parser(
        "sync", help="mirror alias or stage changes made by hand in MLflow's UI, and record them"
    )
    sync.add_argument("--model", required=True, help="registered model name")
    sync.add_argument(
        "--every",
        type=float,
        default=0.0,
        help="keep running, syncing every this many seconds (a sidecar beside the tracking server)",
    )
    rolling = commands.add_parser(
        "rollout",
        help="roll a version out as @canary in growing steps judged on live figures, then to Production",
    )
    rolling.add_argument("--model", required=True, help="registered model name")
    rolling.add_argument("--version", help="version number or 'latest' (to start or resume a rollout)")
    rolling.add_argument(
        "--steps", default="10,50,100", help="percentages of people, ending at 100 (10,50,100)"
    )
    rolling.add_argument("--every", default="10m", help="least time a step lasts: 30s, 10m, 1h (10m)")
    rolling.add_argument(
        "--warmup",
        default="1m",
        help="@canary with no share first, while replicas start it; 0: none (1m)",
    )
    rolling.add_argument(
        "--min-rows",
        type=int,
        default=200,
        help="canary rows compared with production before a step is judged (200)",
    )
    rolling.add_argument("--status", action="store_true", help="show the rollout in progress and its figures")
    rolling.add_argument(
        "--abort", action="store_true", help="end the rollout in progress: production for all"
    )
    rolling.add_argument("--reason", default="", help="why, recorded on the version (with --abort)")
    rolling.add_argument("--user", default=None, help="who (default: current user)")
    rolling.add_argument(
        "--database-url", default=None, help="the prediction log (default: DATABASE_URL, as the proxies use)"
    )
    return parser.parse_args(argv)


def _rollout(client: MlflowClient, args: argparse.Namespace) -> int:  # noqa: PLR0911 - one exit per refusal
    """`rollout`: start or resume and run it, or show or abort the one in progress."""
    if args.status and args.abort:
        return fail("--status and --abort: give one of them")
    user = args.user or _user()
    if args.abort:
        print(rollout.abort(client, args.model, user=user, reason=args.reason))
        return 0
    if args.min_rows < 1:
        return fail(f"--min-rows: must be >= 1, got {args.min_rows}")
    try:
        steps = rollout.parse_steps(args.steps)
    except ValueError as exc:
        return fail(f"--steps: {exc}")
    try:
        every = period(args.every).total_seconds()
    except ValueError as exc:
        return fail(f"--every: {exc}")
    try:
        warmup = 0.0 if args.warmup.strip() in {"0", "0s"} else period(args.warmup).total_seconds()
    except ValueError as exc:
        return fail(f"--warmup: {exc}")
    try:
        engine = make_engine(args.database_url or LogStoreSettings().database_url, must_exist=True)
    except LogStoreError as exc:
        return fail(f"--database-url: {exc.message}")
    try:
        if args.status:
            print(rollout.status(client, args.model, engine))
            return 0
        if args.version is None:
            return fail("--version: give the version to roll out (or --status, --abort)")
        plan, resumed = rollout.start(
            client,
            args.model,
            args.version,
            steps=steps,
            every=every,
            min_rows=args.min_rows,
            user=user,
            warmup=warmup,
        )
        if resumed:
            print(f"resuming the rollout of version {plan.version} at step {plan.step + 1} ({plan.share:g}%)")
        return rollout.run(client, args.model, plan, engine=engine, say=lambda line: print(line, flush=True))
    except SQLAlchemyError as exc:
        return fail(f"--database-url: the prediction log cannot be read: {first_line(exc)}")
    finally:
        engine.dispose()


def _gates(tags: dict[str, str]) -> str:
    verdict = tags.get(GATES_TAG)
    if verdict is None:
        return "by hand" if tags.get(VIA_TAG) == "by hand" else "-"
    return "passed" if verdict == "passed" else "forced"


def render_list(client: MlflowClient, name: str) -> tuple[str, HandConflict | None]:
    """A table of versions: aliases, stage, metric, gates into Production, and the last recorded action."""
    rows = [("version", "aliases", "stage", "copied from", "holdout_roc_auc", "gates", "last action")]
    all_versions = versions(client, name)
    for v in all_versions:
        auc = holdout_auc(client, v)
        last = v.tags.get("audit.last_action", "")
        if last:
            last += f" ({v.tags.get('audit.last_by', '?')}, {v.tags.get('audit.last_at', '?')})"
        rows.append(
            (
                str(v.number),
                ",".join(f"@{a}" for a in v.aliases) or "-",
                v.stage,
                f"{v.copied_from[0]} v{v.copied_from[1]}" if v.copied_from else "-",
                f"{auc:.4f}" if auc is not None else "-",
                _gates(v.tags),
                last or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    ]
    if not all_versions:
        lines.append(f"(model {name!r} has no versions)")
    if (plan := rollout.read_plan(client, name)) is not None:
        lines.append(
            f"rollout: version {plan.version} as @canary on {plan.share:g}% of people, step {plan.step + 1} "
            f"of {len(plan.steps)}, against production version {plan.production} (`rollout --status`)"
        )
    try:
        changes, conflict = pending(client, name), None
    except HandConflict as exc:
        changes, conflict = [], exc
    lines.extend(
        f"pending: {change}; `sync`, `promote` or `rollback` mirrors and records it" for change in changes
    )
    return "\n".join(lines), conflict


def _sync_once(client: MlflowClient, name: str) -> None:
    for note in reconcile(client, name, command="sync"):
        print(f"mirrored: {note}", flush=True)


def _sync(client: MlflowClient, name: str, every: float) -> int:
    """Once, or every `every` seconds until stopped; a conflict stops a single run, a loop reports it."""
    if every < 0:
        return fail(f"--every: must be >= 0, got {every}")
    if not every:
        _sync_once(client, name)
        print(f"{name}: aliases and stages in step")
        return 0
    stop = threading.Event()  # A signal ends the loop after the round in hand, never half-way through one.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    reported = ""
    while not stop.is_set():
        try:
            _sync_once(client, name)
            reported = ""
        except RegistryError as exc:
            if str(exc) != reported:  # Said once, not every round.
                print(f"error: {exc}", file=sys.stderr, flush=True)
                reported = str(exc)
        except MlflowException as exc:
            print(f"error: the registry refused the request: {exc.message}", file=sys.stderr, flush=True)
        stop.wait(every)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit 0 on success, 1 when a gate refuses, 2 on a bad request."""
    args = parse_args(argv)
    # Stages are deprecated in MLflow but kept in step with aliases on purpose.
    warnings.filterwarnings(
        "ignore", message=".*(stage|get_latest_versions).*deprecated", category=FutureWarning
    )
    configure_mlflow()
    client = MlflowClient()
    try:
        if args.command == "list":
            table, conflict = render_list(client, args.model)
            print(table)
            if conflict is not None:
                raise conflict
            return 0
        if args.command == "sync":
            return _sync(client, args.model, args.every)
        if args.command == "rollout":
            return _rollout(client, args)
        if args.command == "promote":
            outcome = actions.promote(
                client,
                args.model,
                args.version,
                args.to,
                user=args.user or _user(),
                reason=args.reason,
                force=args.force,
                tolerance=args.tolerance,
            )
        else:
            outcome = actions.rollback(
                client, args.model, user=args.user or _user(), reason=args.reason, force=args.force
            )
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except MlflowException as exc:
        return fail(f"the registry refused the request: {exc.message}")
    for note in outcome.warnings:
        print(f"warning: {note}")
    for gate in outcome.gates:
        state = ("passed with a WARNING" if gate.warning else "passed") if gate.passed else "FAILED (forced)"
        print(f"gate {gate.name}: {state}: {gate.detail}")
    print(outcome.message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
