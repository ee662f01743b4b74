"""Read the registry's state and move aliases and stages together, with an audit trail."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry_scripts import access
from registry_scripts.errors import RegistryError

# Production first: mirroring a hand-made production change can take a version out of Staging.
STAGE_ALIASES = {"Production": "production", "Staging": "staging"}
TARGETS = {"staging": "Staging", "production": "Production"}
PREVIOUS_TAG = "previous_production_version"
PRODUCTION_AT_TAG = "production_at"
GATES_TAG = "gates.production"  # "passed", or "forced past <gates>"; absent: never gated.
VIA_TAG = "production.via"  # How the version last reached Production.
HISTORY_TAG = "audit.history"
HISTORY_LIMIT = 20
# On a version MLflow copied from another registered model ("Promote model", `copy_model_version`):
# the model our gate and audit tags were written for. Until our scripts write it, those tags came
# with the copy, describe the source, and are not the copy's own.
OWNER_TAG = "registry.model"
AUDIT_TAGS = (GATES_TAG, VIA_TAG, PRODUCTION_AT_TAG, PREVIOUS_TAG, HISTORY_TAG,
              "audit.last_action", "audit.last_by", "audit.last_at", "audit.last_reason")  # fmt: skip
STATE_TAG = "registry.recorded"  # On the registered model: the alias holders the scripts last left.
UNKNOWN_USER = "unknown (MLflow does not record who moves an alias or a stage)"


@dataclass(frozen=True)
class Version:
    """One model version as the commands see it."""

    number: int
    stage: str
    aliases: tuple[str, ...]
    run_id: str | None
    status: str
    tags: dict[str, str]  # Its own: gate and audit tags that came with a copy are left out.
    updated_ms: int = 0  # MLflow's last_updated_timestamp: a stage transition sets it.
    copied_from: tuple[str, int] | None = None  # The (model, version) MLflow copied it from.

    @classmethod
    def of(cls, mv: ModelVersion, aliases: dict[str, str]) -> Version:
        """Convert MLflow's entity; aliases come from the registered model (search omits them)."""
        own = tuple(sorted(alias for alias, number in aliases.items() if str(number) == str(mv.version)))
        return cls(
            int(mv.version),
            mv.current_stage or "None",
            own,
            mv.run_id,
            str(mv.status),
            own_tags(mv),
            int(mv.last_updated_timestamp or 0),
            copied_from(mv),
        )

    @property
    def gated(self) -> bool:
        """Whether the version passed every gate into Production (not forced, not by hand)."""
        return self.tags.get(GATES_TAG) == "passed"


def copied_from(mv: ModelVersion) -> tuple[str, int] | None:
    """The (model, version) a version was copied from (its source is `models:/<other>/<n>`), or None."""
    found = re.fullmatch(r"models:/(.+)/(\d+)", mv.source or "")
    if found is None or found.group(1) == mv.name:
        return None
    return found.group(1), int(found.group(2))


def own_tags(mv: ModelVersion) -> dict[str, str]:
    """A version's tags less the gate and audit tags a copy brought from its source."""
    tags = dict(mv.tags or {})
    if copied_from(mv) is not None and tags.get(OWNER_TAG) != mv.name:
        return {key: value for key, value in tags.items() if key not in AUDIT_TAGS}
    return tags


def claim(client: MlflowClient, name: str, number: int) -> None:
    """Before our first gate or audit tag on a copied version, drop those its source's copy brought."""
    mv = client.get_model_version(name, str(number))
    tags = mv.tags or {}
    if copied_from(mv) is None or tags.get(OWNER_TAG) == name:
        return
    for key in AUDIT_TAGS:
        if key in tags:
            client.delete_model_version_tag(name, str(number), key)
    client.set_model_version_tag(name, str(number), OWNER_TAG, name)


def now() -> str:
    """UTC timestamp used in audit tags."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def from_ms(ms: int) -> str | None:
    """An MLflow millisecond timestamp as ISO 8601 UTC; None for 0."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else None


def registered_model(client: MlflowClient, name: str) -> RegisteredModel:
    """The registered model; fails clearly when none has that name."""
    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        raise RegistryError(f"--model: no registered model named {name!r}") from exc


def model_aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """The model's aliases; fails clearly when no registered model has that name."""
    model = registered_model(client, name)
    return {alias: str(number) for alias, number in (model.aliases or {}).items()}


def versions(client: MlflowClient, name: str) -> list[Version]:
    """Every version of a model, oldest first."""
    aliases = model_aliases(client, name)
    try:
        found = client.search_model_versions(f"name = {access.quoted(name)}")
    except access.LookupFailed as exc:
        raise RegistryError(f"--model: {exc.message}") from exc
    return sorted((Version.of(mv, aliases) for mv in found), key=lambda v: v.number)


def find_version(all_versions: list[Version], name: str, ref: str) -> Version:
    """A version by number, or the newest for 'latest', among a model's versions."""
    if ref == "latest":
        if not all_versions:
            raise RegistryError(f"--version: model {name!r} has no versions")
        return all_versions[-1]
    if not ref.isdigit():
        raise RegistryError(f"--version: expected a version number or 'latest', got {ref!r}")
    for candidate in all_versions:
        if candidate.number == int(ref):
            return candidate
    raise RegistryError(f"--version: model {name!r} has no version {ref}")


def holders(all_versions: list[Version], stage: str) -> list[Version]:
    """The versions in a stage (several only after a hand-made transition that archived nothing)."""
    return [v for v in all_versions if v.stage == stage]


def aliased(all_versions: list[Version], alias: str) -> Version | None:
    """The version an alias names, if any."""
    return next((v for v in all_versions if alias in v.aliases), None)


def recorded_state(client: MlflowClient, name: str) -> dict[str, int | None] | None:
    """The alias holders the scripts last left; None if they never recorded any."""
    raw = (registered_model(client, name).tags or {}).get(STATE_TAG)
    if raw is None:
        return None
    try:
        state = json.loads(raw)
        return {alias: None if state.get(alias) is None else int(state[alias]) for alias in TARGETS}
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return None  # A tag edited by hand into nonsense counts as never recorded.


def save_state(client: MlflowClient, name: str) -> None:
    """Record the alias holders as the scripts leave them."""
    all_versions = versions(client, name)
    state = {alias: (v.number if (v := aliased(all_versions, alias)) else None) for alias in TARGETS}
    client.set_registered_model_tag(name, STATE_TAG, json.dumps({**state, "at": now()}))


def record(
    client: MlflowClient,
    name: str,
    number: int,
    *,
    action: str,
    user: str,
    reason: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Tag a version with who did what, when and why, keeping a bounded history."""
    claim(client, name, number)
    current = client.get_model_version(name, str(number))
    try:
        history = json.loads((current.tags or {}).get(HISTORY_TAG, "[]"))
    except json.JSONDecodeError:
        history = []
    entry = {"action": action, "by": user, "at": now(), "reason": reason, **(extra or {})}
    history = [*history, entry][-HISTORY_LIMIT:]
    for key, value in {
        "audit.last_action": action,
        "audit.last_by": user,
        "audit.last_at": entry["at"],
        "audit.last_reason": reason,
        HISTORY_TAG: json.dumps(history),
    }.items():
        client.set_model_version_tag(name, str(number), key, value)


def history(version: Version) -> list[dict[str, Any]]:
    """A version's audit history, oldest first."""
    return history_of(version.tags)


def history_of(tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The audit history in a version's tags (MLflow's or ours), oldest first; unreadable: none."""
    try:
        entries = json.loads(tags.get(HISTORY_TAG, "[]"))
    except json.JSONDecodeError:
        return []
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


def set_alias(client: MlflowClient, name: str, alias: str, number: int | None) -> None:
    """Point an alias at a version, or delete it."""
    if number is not None:
        client.set_registered_model_alias(name, alias, str(number))
        return
    with contextlib.suppress(MlflowException):  # Already gone.
        client.delete_registered_model_alias(name, alias)


def move(client: MlflowClient, name: str, number: int, stage: str) -> None:
    """Put a version in a stage and its alias, archiving the previous holder, and leave it recorded."""
    before = versions(client, name)
    client.transition_model_version_stage(name, str(number), stage, archive_existing_versions=True)
    target = STAGE_ALIASES[stage]
    set_alias(client, name, target, number)
    for alias in STAGE_ALIASES.values():
        held = aliased(before, alias)
        if alias != target and held is not None and held.number == number:
            set_alias(client, name, alias, None)  # One version, one stage: it left the other one.
    save_state(client, name)


def mark_production(client: MlflowClient, name: str, number: int, *, previous: int | None, via: str) -> None:
    """Tags of a version entering Production: when, after which version, and how."""
    claim(client, name, number)
    client.set_model_version_tag(name, str(number), PRODUCTION_AT_TAG, now())
    client.set_model_version_tag(name, str(number), VIA_TAG, via)
    if previous is not None and previous != number:
        client.set_model_version_tag(name, str(number), PREVIOUS_TAG, str(previous))
