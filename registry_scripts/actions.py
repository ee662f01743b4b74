"""Promote and roll back: the registry's stage and alias always move together."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

from registry_scripts import gates
from registry_scripts.errors import PromotionRefused, RegistryError
from registry_scripts.registry import (
    PREVIOUS_TAG,
    PRODUCTION_AT_TAG,
    TARGETS,
    Version,
    find_version,
    holder,
    move,
    now,
    record,
    sync_aliases,
    versions,
)


@dataclass(frozen=True)
class Outcome:
    """What a command changed, and the gate results that allowed it."""

    message: str
    gates: list[gates.GateResult] = field(default_factory=list)


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
    """Move a version to Staging or Production with its alias, after the gates for Production."""
    if target not in TARGETS:
        raise RegistryError(f"--to: expected one of {sorted(TARGETS)}, got {target!r}")
    if tolerance < 0:
        raise RegistryError(f"--tolerance: must be >= 0, got {tolerance}")
    stage = TARGETS[target]
    all_versions = versions(client, name)
    candidate = find_version(all_versions, name, version_ref)
    if candidate.status != "READY":
        raise RegistryError(f"--version: version {candidate.number} is {candidate.status}, not READY")
    current = holder(all_versions, stage)
    if current is not None and current.number == candidate.number:
        sync_aliases(client, name)
        return Outcome(f"{name} version {candidate.number} is already in {stage} (@{target} in step)")

    results: list[gates.GateResult] = []
    if stage == "Production":
        results = [
            gates.check_loads_and_explains(name, candidate),
            gates.check_metric(client, candidate, current, tolerance),
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
        client.set_model_version_tag(name, str(candidate.number), PRODUCTION_AT_TAG, now())
        if current is not None:
            client.set_model_version_tag(name, str(candidate.number), PREVIOUS_TAG, str(current.number))
    record(client, name, candidate, action=f"promoted to {stage}", user=user, reason=why)
    if current is not None:
        record(
            client,
            name,
            current,
            action=f"archived: replaced in {stage} by version {candidate.number}",
            user=user,
            reason=why,
        )
    replaced = f", replacing version {current.number}" if current else ""
    return Outcome(f"{name} version {candidate.number} is now in {stage} and @{target}{replaced}", results)


def _rollback_target(all_versions: list[Version], current: Version) -> Version:
    by_number = {v.number: v for v in all_versions}
    previous = current.tags.get(PREVIOUS_TAG)
    if previous is not None:
        if int(previous) not in by_number:
            raise RegistryError(f"previous production version {previous} no longer exists")
        return by_number[int(previous)]
    if PRODUCTION_AT_TAG in current.tags:
        raise RegistryError(
            f"version {current.number} was the first in Production; there is nothing before it"
        )
    # Put in Production by hand (e.g. in the MLflow UI): go back to the last version we promoted.
    earlier = [v for v in all_versions if v.number != current.number and PRODUCTION_AT_TAG in v.tags]
    if not earlier:
        raise RegistryError("no earlier production version is recorded in the registry")
    return max(earlier, key=lambda v: v.tags[PRODUCTION_AT_TAG])


def rollback(client: MlflowClient, name: str, *, user: str, reason: str) -> Outcome:
    """Put the previous production version back in Production and @production."""
    all_versions = versions(client, name)
    current = holder(all_versions, "Production")
    if current is None:
        raise RegistryError(f"no version of {name!r} is in Production; nothing to roll back")
    target = _rollback_target(all_versions, current)
    move(client, name, target.number, "Production")
    client.set_model_version_tag(name, str(target.number), PRODUCTION_AT_TAG, now())
    record(
        client,
        name,
        target,
        action=f"restored to Production by rollback from version {current.number}",
        user=user,
        reason=reason,
    )
    record(
        client,
        name,
        current,
        action=f"rolled back: replaced by version {target.number}",
        user=user,
        reason=reason,
    )
    return Outcome(
        f"{name} rolled back: version {target.number} is in Production and @production again "
        f"(was version {current.number})"
    )
