"""Read the registry's state and move stages and aliases together, with an audit trail."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry_scripts import access
from registry_scripts.errors import RegistryError

STAGE_ALIASES = {"Staging": "staging", "Production": "production"}
TARGETS = {"staging": "Staging", "production": "Production"}
PREVIOUS_TAG = "previous_production_version"
PRODUCTION_AT_TAG = "production_at"
HISTORY_TAG = "audit.history"
HISTORY_LIMIT = 20


@dataclass(frozen=True)
class Version:
    """One model version as the commands see it."""

    number: int
    stage: str
    aliases: tuple[str, ...]
    run_id: str | None
    status: str
    tags: dict[str, str]

    @classmethod
    def of(cls, mv: ModelVersion, aliases: dict[str, str]) -> Version:
        """Convert MLflow's entity; aliases come from the registered model (search omits them)."""
        own = tuple(sorted(alias for alias, number in aliases.items() if str(number) == str(mv.version)))
        return cls(
            int(mv.version), mv.current_stage or "None", own, mv.run_id, str(mv.status), dict(mv.tags or {})
        )


def now() -> str:
    """UTC timestamp used in audit tags."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def model_aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """The model's aliases; fails clearly when no registered model has that name."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        raise RegistryError(f"--model: no registered model named {name!r}") from exc
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


def holder(all_versions: list[Version], stage: str) -> Version | None:
    """The version in a stage; the newest one if a person left several there."""
    in_stage = [v for v in all_versions if v.stage == stage]
    return in_stage[-1] if in_stage else None


def drift(all_versions: list[Version]) -> list[str]:
    """Where an alias and its stage name different versions."""
    problems = []
    for stage, alias in STAGE_ALIASES.items():
        staged = holder(all_versions, stage)
        aliased = next((v for v in all_versions if alias in v.aliases), None)
        staged_no = staged.number if staged else None
        aliased_no = aliased.number if aliased else None
        if staged_no != aliased_no:
            problems.append(
                f"stage {stage} is version {staged_no} but alias @{alias} is version {aliased_no}"
            )
    return problems


def record(client: MlflowClient, name: str, version: Version, *, action: str, user: str, reason: str) -> None:
    """Tag a version with who did what, when and why, keeping a bounded history."""
    number = version.number
    current = client.get_model_version(name, str(number))
    try:
        history = json.loads((current.tags or {}).get(HISTORY_TAG, "[]"))
    except json.JSONDecodeError:
        history = []
    entry = {"action": action, "by": user, "at": now(), "reason": reason}
    history = [*history, entry][-HISTORY_LIMIT:]
    for key, value in {
        "audit.last_action": action,
        "audit.last_by": user,
        "audit.last_at": entry["at"],
        "audit.last_reason": reason,
        HISTORY_TAG: json.dumps(history),
    }.items():
        client.set_model_version_tag(name, str(number), key, value)


def sync_aliases(client: MlflowClient, name: str) -> None:
    """Point each stage's alias at the version holding the stage, or drop it if none does."""
    all_versions = versions(client, name)
    for stage, alias in STAGE_ALIASES.items():
        staged = holder(all_versions, stage)
        if staged is not None:
            client.set_registered_model_alias(name, alias, str(staged.number))
        elif any(alias in v.aliases for v in all_versions):
            client.delete_registered_model_alias(name, alias)


def move(client: MlflowClient, name: str, number: int, stage: str) -> None:
    """Put a version in a stage, archiving the previous holder, and bring aliases in step."""
    client.transition_model_version_stage(name, str(number), stage, archive_existing_versions=True)
    sync_aliases(client, name)
