"""Promote and roll back: the alias moves and the stage mirrors it, after hand-made changes are mirrored."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

from registry_scripts import gates
from registry_scripts.errors import PromotionRefused, RegistryError
from registry_scripts.registry import (
    GATES_TAG,
    PREVIOUS_TAG,
    PRODUCTION_AT_TAG,
    TARGETS,
    VIA_TAG,
    Version,
    aliased,
    find_version,
    mark_production,
    move,
    now,
    record,
    versions,
)
from registry_scripts.sync import reconcile


@dataclass(frozen=True)
class Outcome:
    """What a command changed, the gate results that allowed it, and what it warns about."""

    message: str
    gates: list[gates.GateResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def promote(
    client: MlflowClient,
    name: str,
    version_ref: str,
    target: str,
    *,
    user: str,
    reason: str,
    force: bool = False,
    tolerance: float = 0.01,
) -> Outcome:
    """Move a version to @staging or @production with its stage, after the gates for Production."""
    if target not in TARGETS:
        raise RegistryError(f"--to: expected one of {sorted(TARGETS)}, got {target!r}")
    if tolerance < 0:
        raise RegistryError(f"--tolerance: must be >= 0, got {tolerance}")
    stage = TARGETS[target]
    notes = reconcile(client, name, command="promote", resolving=target)
    all_versions = versions(client, name)
    candidate = find_version(all_versions, name, version_ref)
    if candidate.status != "READY":
        raise RegistryError(f"--version: version {candidate.number} is {candidate.status}, not READY")
    current = aliased(all_versions, target)  # The alias is the truth.
    if current is not None and current.number == candidate.number and current.stage == stage:
        return Outcome(
            f"{name} version {candidate.number} is already @{target} and in {stage}", warnings=notes
        )

    results: list[gates.GateResult] = []
    if stage == "Production":
        results = [
            gates.check_loads_and_explains(name, candidate),
            gates.check_metric(client, candidate, current, tolerance),
            gates.check_baseline(client, candidate),
            gates.check_live_shadow(client, name, candidate, current),
            gates.check_fairness(client, name, candidate, current),
        ]
        blocking = [r for r in results if not r.passed and not (force and r.overridable)]
        if blocking:
            reasons = "; ".join(f"{r.name}: {r.detail}" for r in blocking)
            raise PromotionRefused(
                f"promotion of {name} version {candidate.number} to {stage} refused: {reasons}"
            )

    move(client, name, candidate.number, stage)
    forced = [r.name for r in results if not r.passed]
    why = reason + (f" (forced past {', '.join(forced)})" if forced else "")
    if stage == "Production":
        previous = current.number if current is not None else None
        mark_production(client, name, candidate.number, previous=previous, via="promote")
        verdict = f"forced past {', '.join(forced)}" if forced else "passed"
        client.set_model_version_tag(name, str(candidate.number), GATES_TAG, verdict)
    gate_log = [
        {"gate": r.name, "passed": r.passed, "detail": r.detail, **({"warning": True} if r.warning else {})}
        for r in results
    ]
    record(
        client,
        name,
        candidate.number,
        action=f"promoted to {stage}",
        user=user,
        reason=why,
        extra={"gates": gate_log} if gate_log else None,
    )
    if current is not None and current.number != candidate.number:
        record(
            client,
            name,
            current.number,
            action=f"archived: replaced in {stage} by version {candidate.number}",
            user=user,
            reason=why,
        )
    replaced = (
        f", replacing version {current.number}" if current and current.number != candidate.number else ""
    )
    return Outcome(
        f"{name} version {candidate.number} is now in {stage} and @{target}{replaced}", results, notes
    )


def _how(version: Version) -> str:
    via = version.tags.get(VIA_TAG, "by hand")
    forced = version.tags.get(GATES_TAG, "")
    return f"{via}, {forced}" if forced.startswith("forced") else via


def _rollback_target(all_versions: list[Version], current: Version, force: bool) -> tuple[Version, list[str]]:
    """Back along the chain of production versions to the last one that passed the gates."""
    by_number = {v.number: v for v in all_versions}
    skipped: list[str] = []
    seen = {current.number}
    step = current
    while (previous := step.tags.get(PREVIOUS_TAG)) is not None and previous.isdigit():
        number = int(previous)
        if number in seen:
            break
        if number not in by_number:
            raise RegistryError(f"previous production version {number} no longer exists")
        seen.add(number)
        step = by_number[number]
        if force or step.gated:
            return step, skipped
        skipped.append(
            f"skipped version {number}: it reached Production {_how(step)} without passing the gates "
            "(--force takes it)"
        )
    if step is current and PRODUCTION_AT_TAG not in current.tags:
        # Never recorded in Production (a registry older than these scripts): the newest gated one.
        earlier = [
            v for v in all_versions if v.number != current.number and v.gated and PRODUCTION_AT_TAG in v.tags
        ]
        if earlier:
            return max(earlier, key=lambda v: v.tags[PRODUCTION_AT_TAG]), skipped
    if skipped:
        raise RegistryError(
            f"no version before {current.number} passed the gates into Production; " + "; ".join(skipped)
        )
    raise RegistryError(f"version {current.number} was the first in Production; there is nothing before it")


def rollback(client: MlflowClient, name: str, *, user: str, reason: str, force: bool = False) -> Outcome:
    """Put the last gated production version before the current one back in Production and @production."""
    notes = reconcile(client, name, command="rollback")
    all_versions = versions(client, name)
    current = aliased(all_versions, "production")
    if current is None:
        raise RegistryError(f"no version of {name!r} is @production; nothing to roll back")
    target, skipped = _rollback_target(all_versions, current, force)
    move(client, name, target.number, "Production")
    # How it first got in (its gates) stays: the audit history tells of the rollback.
    client.set_model_version_tag(name, str(target.number), PRODUCTION_AT_TAG, now())
    why = reason + (" (forced: gates not required)" if force and not target.gated else "")
    record(
        client,
        name,
        target.number,
        action=f"restored to Production by rollback from version {current.number}",
        user=user,
        reason=why,
    )
    record(
        client,
        name,
        current.number,
        action=f"rolled back: replaced by version {target.number}",
        user=user,
        reason=why,
    )
    return Outcome(
        f"{name} rolled back: version {target.number} is in Production and @production again "
        f"(was version {current.number})",
        warnings=[*notes, *skipped],
    )
