"""Changes made by hand in MLflow's UIs, recognised against the scripts' last record and mirrored.

The alias is the truth (MLflow 3's default UI moves aliases); the stage is kept as its mirror for
`models:/name/Production` clients. The legacy UI moves stages. Whichever side a person moved since
the scripts last recorded the registry is mirrored to the other, never undone.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from registry_scripts.errors import RegistryError
from registry_scripts.registry import (
    STAGE_ALIASES,
    TARGETS,
    UNKNOWN_USER,
    Version,
    aliased,
    from_ms,
    holders,
    mark_production,
    record,
    recorded_state,
    save_state,
    set_alias,
    versions,
)


class HandConflict(RegistryError):
    """An alias and its stage were both moved by hand, to different versions."""


@dataclass(frozen=True)
class HandChange:
    """One target moved by hand since the last record, and how to bring both sides to `after`."""

    stage: str
    alias: str
    before: int | None  # As the scripts last recorded it.
    after: int | None  # The version that holds alias and stage once mirrored; None: nobody.
    moved: str  # "alias", "stage", "both" or "unrecorded" (no record to compare with).
    archive: tuple[int, ...]  # Versions left in the stage besides `after`.
    staged: tuple[int, ...] = ()  # The versions in the stage when it was found.

    def describe(self) -> str:
        """One line: what was found and what mirroring it does."""
        where = f"version {self.after}" if self.after is not None else "no version"
        was = f"version {self.before}" if self.before is not None else "no version"
        if self.moved == "unrecorded":
            found = f"@{self.alias} and stage {self.stage} disagree and nothing was recorded; the alias wins"
        elif self.moved == "alias":
            found = f"@{self.alias} was moved by hand from {was} to {where}"
        elif self.moved == "stage":
            found = f"stage {self.stage} was changed by hand from {was} to {where}"
        else:
            found = f"@{self.alias} and stage {self.stage} were both moved by hand from {was} to {where}"
        extra = ""
        if self.archive and self.after is not None:
            archived = ", ".join(map(str, self.archive))
            extra = (
                f"; {len(self.staged)} versions were in {self.stage} at once, version(s) {archived} archived"
                if self.after in self.staged
                else f"; version(s) {archived} left {self.stage} for version {self.after} (archived)"
            )
        return f"{found}: {self.stage} and @{self.alias} are {where}{extra}"


def _conflict(name: str, change: HandChange, by_stage: int | None) -> str:
    stage, alias, before, by_alias = change.stage, change.alias, change.before, change.after
    target = next(key for key, value in TARGETS.items() if value == stage)
    return (
        f"{name}: @{alias} was moved by hand to version {by_alias} and stage {stage} to version {by_stage} "
        f"(both were version {before} when last recorded); choose one with `python -m registry_scripts "
        f"promote --model {name} --version <{by_alias} or {by_stage}> --to {target}`"
    )


def plan(
    name: str,
    all_versions: list[Version],
    recorded: dict[str, int | None] | None,
    *,
    resolving: str | None = None,
) -> list[HandChange]:
    """The hand-made changes to mirror, per target; `HandConflict` unless `resolving` names that target."""
    changes = []
    for stage, alias in STAGE_ALIASES.items():
        held = aliased(all_versions, alias)
        by_alias = held.number if held else None
        staged = {v.number for v in holders(all_versions, stage)}
        if recorded is None:
            after = by_alias if by_alias is not None else max(staged, default=None)
            if staged != ({after} if after is not None else set()) or by_alias != after:
                changes.append(
                    HandChange(
                        stage,
                        alias,
                        None,
                        after,
                        "unrecorded",
                        tuple(sorted(staged - {after})),
                        tuple(sorted(staged)),
                    )
                )
            continue
        before = recorded.get(alias)
        new_in_stage = staged - {before}
        alias_moved = by_alias != before
        stage_moved = bool(new_in_stage) or (before is not None and before not in staged)
        if not alias_moved and not stage_moved:
            continue
        if alias_moved and not stage_moved:
            after, moved = by_alias, "alias"
        elif not alias_moved:
            after, moved = max(new_in_stage, default=None), "stage"
        elif by_alias == max(new_in_stage, default=None) or (by_alias is not None and by_alias in staged):
            after, moved = by_alias, "both"
        elif resolving == alias:
            continue  # The promote that resolves it moves both sides.
        else:
            conflict = HandChange(stage, alias, before, by_alias, "conflict", ())
            raise HandConflict(_conflict(name, conflict, max(new_in_stage, default=None)))
        changes.append(
            HandChange(
                stage, alias, before, after, moved, tuple(sorted(staged - {after})), tuple(sorted(staged))
            )
        )
    return changes


def _apply(
    client: MlflowClient, name: str, change: HandChange, all_versions: list[Version], command: str
) -> None:
    by_number = {v.number: v for v in all_versions}
    if change.after is not None and by_number[change.after].stage != change.stage:
        client.transition_model_version_stage(
            name, str(change.after), change.stage, archive_existing_versions=False
        )
    for number in change.archive:
        client.transition_model_version_stage(name, str(number), "Archived", archive_existing_versions=False)
    set_alias(client, name, change.alias, change.after)
    manual = change.moved != "unrecorded"
    side = {"alias": "MLflow's UI (alias)", "stage": "the legacy UI (stage)", "both": "both UIs"}
    # MLflow times a stage transition, not an alias move: that happened since the last record.
    timed = by_number[change.after] if change.moved == "stage" and change.after is not None else None
    extra = {
        "manual": manual,
        "changed_at": from_ms(timed.updated_ms) if timed else None,
        "recognised_by": command,
    }
    reason = f"hand-made change in {side.get(change.moved, 'the registry')}" if manual else "brought in step"
    if change.after is not None:
        record(
            client,
            name,
            change.after,
            action=f"{change.stage} by hand: {change.describe()}",
            user=UNKNOWN_USER if manual else command,
            reason=reason,
            extra=extra,
        )
        if change.stage == "Production" and manual:
            mark_production(client, name, change.after, previous=change.before, via="by hand")
    for number in {*change.archive, *([change.before] if change.before is not None else [])} - {change.after}:
        if number in by_number:
            record(
                client,
                name,
                number,
                action=f"left {change.stage} by hand: {change.describe()}",
                user=UNKNOWN_USER if manual else command,
                reason=reason,
                extra=extra,
            )


def reconcile(client: MlflowClient, name: str, *, command: str, resolving: str | None = None) -> list[str]:
    """Mirror every hand-made change since the last record and record the result; one line per change."""
    all_versions = versions(client, name)
    changes = plan(name, all_versions, recorded_state(client, name), resolving=resolving)
    notes = []
    for change in changes:
        _apply(client, name, change, all_versions, command)
        notes.append(change.describe())
        all_versions = versions(client, name)
    # A version taken into Production by hand also leaves Staging: one version, one stage.
    production, staging = aliased(all_versions, "production"), aliased(all_versions, "staging")
    if production is not None and staging is not None and production.number == staging.number:
        set_alias(client, name, "staging", None)
        notes.append(f"version {production.number} is in Production, so @staging no longer names it")
    if changes or recorded_state(client, name) is None:
        save_state(client, name)
    return notes


def pending(client: MlflowClient, name: str) -> list[str]:
    """What `reconcile` would mirror, without changing anything (a conflict raises `HandConflict`)."""
    return [change.describe() for change in plan(name, versions(client, name), recorded_state(client, name))]
