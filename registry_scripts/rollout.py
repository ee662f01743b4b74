"""A canary rollout: `@canary` answers a growing share of people, each step judged on live figures.

The registry holds the whole state, so every proxy, a restarted proxy and a restarted controller see
the same: the alias `@canary`, the registered model's tag `rollout.share` (what the proxies route
by) and `rollout.plan` (the steps, the step in hand, when it began). A step passes when the log
holds enough of the canary's rows since it began and their figures are within the version's
`rollout.*` limits (training's `rollout:` section); the last step ends in a promotion through the
usual gates. A failed step removes `@canary` and the share: every proxy is back on production
within one poll, and the audit history says why.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from registry_scripts import actions, live
from registry_scripts.errors import RegistryError
from registry_scripts.registry import (
    aliased,
    find_version,
    now,
    record,
    registered_model,
    set_alias,
    versions,
)

CANARY = "canary"
SHARE_TAG = "rollout.share"  # Read by every proxy at each poll.
PLAN_TAG = "rollout.plan"
ROLLED_BACK, PROMOTED = 1, 0


class Plan(BaseModel):
    """A rollout in progress, as the registered model's `rollout.plan` tag holds it."""

    version: int
    production: int
    steps: list[float]
    step: int = 0
    every_seconds: float
    min_rows: int
    started_at: str
    step_started_at: str
    by: str
    figures: list[dict[str, object]] = []  # Each passed step's figures, for the audit entry.
    # Before the first step `@canary` names the version with no share, so that every replica has its
    # backend running before anyone is sent there: else a person may meet both versions meanwhile.
    warmup_seconds: float = 0.0
    warming: bool = False

    @property
    def share(self) -> float:
        """The share of the step in hand, in percent (none while warming up)."""
        return 0.0 if self.warming else self.steps[self.step]


def _percent(steps: list[float]) -> str:
    return ",".join(f"{step:g}" for step in steps) + "%"


def parse_steps(text: str) -> list[float]:
    """`10,50,100`: growing percentages ending at 100; ValueError otherwise."""
    try:
        steps = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"expected percentages like 10,50,100, got {text!r}") from None
    if not steps or steps[-1] != 100 or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
        raise ValueError(f"expected growing percentages above 0 that end at 100, got {text!r}")
    return steps


def read_plan(client: MlflowClient, name: str) -> Plan | None:
    """The rollout in progress, or None."""
    return _plan_of(name, registered_model(client, name).tags or {})


def _plan_of(name: str, tags: dict[str, str]) -> Plan | None:
    raw = tags.get(PLAN_TAG)
    if raw is None:
        return None
    try:
        return Plan.model_validate_json(raw)
    except ValidationError as exc:
        raise RegistryError(
            f"the tag {PLAN_TAG} on {name} is not a rollout plan; `rollout --abort` clears it"
        ) from exc


def _save(client: MlflowClient, name: str, plan: Plan) -> None:
    client.set_registered_model_tag(name, PLAN_TAG, plan.model_dump_json())
    client.set_registered_model_tag(name, SHARE_TAG, f"{plan.share:g}")


def _clear(client: MlflowClient, name: str) -> None:
    """No canary: the share first, so no proxy routes to a version about to lose its alias."""
    for tag in (SHARE_TAG, PLAN_TAG):
        with contextlib.suppress(MlflowException):
            client.delete_registered_model_tag(name, tag)
    set_alias(client, name, CANARY, None)


def start(
    client: MlflowClient,
    name: str,
    version_ref: str,
    *,
    steps: list[float],
    every: float,
    min_rows: int,
    user: str,
    warmup: float = 0.0,
) -> tuple[Plan, bool]:
    """The plan to run: a new rollout of the version, or the one in progress resumed (True)."""
    plan = read_plan(client, name)
    all_versions = versions(client, name)
    candidate = find_version(all_versions, name, version_ref)
    if plan is not None:
        if plan.version != candidate.number:
            raise RegistryError(
                f"--version: a rollout of version {plan.version} is in progress; "
                f"`rollout --model {name} --abort` ends it"
            )
        return plan, True
    production = aliased(all_versions, "production")
    if production is None:
        raise RegistryError(f"--model: no version of {name!r} is @production; promote one first")
    if candidate.number == production.number:
        raise RegistryError(f"--version: version {candidate.number} is already @production")
    if candidate.status != "READY":
        raise RegistryError(f"--version: version {candidate.number} is {candidate.status}, not READY")
    plan = Plan(
        version=candidate.number, production=production.number, steps=steps, every_seconds=every,
        min_rows=min_rows, started_at=now(), step_started_at=now(), by=user, warmup_seconds=warmup,
        warming=warmup > 0,
    )  # fmt: skip
    set_alias(client, name, CANARY, candidate.number)
    _save(client, name, plan)
    action = f"rollout started against production version {production.number}"
    how = f"steps {_percent(steps)}, {every:g} s each, {min_rows} rows at least"
    record(client, name, candidate.number, action=action, user=user, reason=how)
    return plan, False


def limits(client: MlflowClient, name: str, number: int) -> dict[str, float | None]:
    """The version's `rollout.*` limits as training tagged them; the defaults where it did not."""
    tags = client.get_model_version(name, str(number)).tags or {}
    found = dict(live.LIMITS)
    for key in found:
        with contextlib.suppress(KeyError, ValueError):
            found[key] = float(tags[f"rollout.{key}"])
    return found


def interrupted(client: MlflowClient, name: str, plan: Plan) -> str | None:
    """Why the rollout must stop, when someone else changed the registry under it; else None."""
    model = registered_model(client, name)  # One read a poll: the plan and both aliases.
    current = _plan_of(name, model.tags or {})
    if current is None or current.version != plan.version:
        return "the rollout was aborted (its plan is gone from the registry)"
    aliases = model.aliases or {}
    for alias, expected in ((CANARY, plan.version), ("production", plan.production)):
        found = aliases.get(alias)
        if found is None or int(found) != expected:
            where = f"version {found}" if found is not None else "no version"
            return f"@{alias} was moved by hand to {where}"
    return None


def abort(client: MlflowClient, name: str, *, user: str, reason: str) -> str:
    """End the rollout in progress: no canary, production answers everyone."""
    plan = read_plan(client, name)
    if plan is None:
        raise RegistryError(f"--model: no rollout of {name!r} is in progress")
    _clear(client, name)
    record(client, name, plan.version, action=f"rollout aborted at {plan.share:g}%", user=user, reason=reason)
    return (
        f"{name}: rollout of version {plan.version} aborted; "
        f"production version {plan.production} answers everyone"
    )


def status(client: MlflowClient, name: str, engine: Engine | None) -> str:
    """The rollout in progress and its step's figures so far, or that there is none."""
    plan = read_plan(client, name)
    if plan is None:
        return f"{name}: no rollout in progress"
    lines = [
        f"{name}: version {plan.version} on {plan.share:g}% of people "
        f"(step {plan.step + 1} of {len(plan.steps)}: {_percent(plan.steps)}), "
        f"against production version {plan.production}; "
        f"started {plan.started_at} by {plan.by}, this step {plan.step_started_at}"
    ]
    if engine is not None:
        found = live.figures(
            engine, model=name, canary=plan.version, production=plan.production,
            since=datetime.fromisoformat(plan.step_started_at),
        )  # fmt: skip
        lines.append(f"this step so far: {found.describe()}")
    return "\n".join(lines)


def _rollback(
    client: MlflowClient, name: str, plan: Plan, reason: str, figures: dict[str, object] | None
) -> None:
    _clear(client, name)
    record(
        client, name, plan.version, action=f"rolled back from the canary at {plan.share:g}%", user=plan.by,
        reason=reason, extra={"live": figures} if figures else None,
    )  # fmt: skip


def run(
    client: MlflowClient,
    name: str,
    plan: Plan,
    *,
    engine: Engine,
    say: Callable[[str], None],
    poll_seconds: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Step by step to 100%, then Production; 0 when promoted, 1 when rolled back."""
    bounds = limits(client, name, plan.version)
    if plan.warming:
        left = (
            plan.warmup_seconds
            - (datetime.now(UTC) - datetime.fromisoformat(plan.started_at)).total_seconds()
        )
        say(f"warming up: @canary names version {plan.version} with no share for {max(left, 0):.0f} s more")
        until = clock() + left
        while clock() < until:
            if (why := interrupted(client, name, plan)) is not None:
                return _stopped(client, name, plan, why, say)
            time.sleep(min(poll_seconds, max(until - clock(), 0)))
        plan = plan.model_copy(update={"warming": False, "step_started_at": now()})
        _save(client, name, plan)
    while True:
        since = datetime.fromisoformat(plan.step_started_at)
        arms: dict[str, Any] = {
            "model": name, "canary": plan.version, "production": plan.production, "since": since,
        }  # fmt: skip
        elapsed = (datetime.now(UTC) - since).total_seconds()
        say(f"step {plan.step + 1}/{len(plan.steps)}: version {plan.version} on {plan.share:g}% of people")
        started = clock() - elapsed
        while True:
            if (why := interrupted(client, name, plan)) is not None:
                return _stopped(client, name, plan, why, say)
            waited = clock() - started >= plan.every_seconds
            if waited and live.compared_rows(engine, **arms) >= plan.min_rows:
                break
            time.sleep(poll_seconds)
        found = live.figures(engine, **arms)
        problems = live.judge(found, bounds)
        figures = {"share": plan.share, "since": plan.step_started_at, **found.as_dict()}
        if problems:
            reason = "; ".join(problems)
            _rollback(client, name, plan, reason, figures)
            say(f"step {plan.step + 1} FAILED: {reason} ({found.describe()})")
            say(f"rolled back: @canary removed; production version {plan.production} answers everyone")
            return ROLLED_BACK
        say(f"step {plan.step + 1} passed: {found.describe()}")
        plan = plan.model_copy(update={"figures": [*plan.figures, figures]})
        if plan.step + 1 == len(plan.steps):
            break
        plan = plan.model_copy(update={"step": plan.step + 1, "step_started_at": now()})
        _save(client, name, plan)
    return _finish(client, name, plan, say)


def _stopped(client: MlflowClient, name: str, plan: Plan, why: str, say: Callable[[str], None]) -> int:
    """Someone else changed the registry under the rollout: roll back (unless they aborted it)."""
    if "aborted" not in why:
        _rollback(client, name, plan, f"stopped: {why}", None)
    say(f"stopped: {why}; production version {plan.production} answers everyone")
    return ROLLED_BACK


def _finish(client: MlflowClient, name: str, plan: Plan, say: Callable[[str], None]) -> int:
    """Promote through the usual gates; a refusal rolls back."""
    try:
        outcome = actions.promote(
            client, name, str(plan.version), "production", user=plan.by,
            reason=f"rollout: every step passed ({_percent(plan.steps)})",
        )  # fmt: skip
    except RegistryError as exc:
        _rollback(client, name, plan, f"promotion refused: {exc}", None)
        say(f"rolled back: {exc}")
        return ROLLED_BACK
    _clear(client, name)
    record(
        client, name, plan.version, action="rollout completed", user=plan.by,
        reason=f"{len(plan.steps)} steps passed", extra={"live": json.loads(json.dumps(plan.figures))},
    )  # fmt: skip
    for gate in outcome.gates:
        say(f"gate {gate.name}: {'passed' if gate.passed else 'FAILED (forced)'}: {gate.detail}")
    say(outcome.message)
    return PROMOTED
