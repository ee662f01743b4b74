"""The plan of hand-made changes, from the registry's state and the scripts' last record (no MLflow)."""

from __future__ import annotations

import pytest

from registry_scripts.registry import Version
from registry_scripts.sync import HandConflict, plan


def registry(production: int | None, staged: dict[int, str]) -> list[Version]:
    """Versions 1-4 with @production on one and the given stages."""
    return [
        Version(n, staged.get(n, "None"), ("production",) if n == production else (), None, "READY", {})
        for n in range(1, 5)
    ]


def production_change(production: int | None, staged: dict[int, str], recorded: int | None) -> object:
    changes = plan("m", registry(production, staged), {"production": recorded, "staging": None})
    found = [(c.moved, c.before, c.after, c.archive) for c in changes if c.stage == "Production"]
    return found[0] if found else None


@pytest.mark.parametrize(
    ("production", "staged", "recorded", "expected"),
    [
        (1, {1: "Production"}, 1, None),  # In step.
        (2, {1: "Production"}, 1, ("alias", 1, 2, (1,))),  # New UI: the alias moved.
        (None, {1: "Production"}, 1, ("alias", 1, None, (1,))),  # New UI: the alias deleted.
        (1, {2: "Production"}, 1, ("stage", 1, 2, ())),  # Legacy UI, archiving the old one.
        (1, {1: "Production", 2: "Production"}, 1, ("stage", 1, 2, (1,))),  # Legacy UI, archiving nothing.
        (1, {1: "Archived"}, 1, ("stage", 1, None, ())),  # Legacy UI: taken out of Production.
        (2, {2: "Production"}, 1, ("both", 1, 2, ())),  # Both moved to the same version.
        (2, {1: "Production", 2: "Production"}, 1, ("both", 1, 2, (1,))),
        (2, {}, None, ("alias", None, 2, ())),  # First production version, set in the UI.
    ],
)
def test_each_hand_made_change_is_recognised(
    production: int | None, staged: dict[int, str], recorded: int | None, expected: object
) -> None:
    assert production_change(production, staged, recorded) == expected


def test_without_a_record_the_alias_wins_and_a_lone_stage_is_adopted() -> None:
    changes = plan("m", registry(2, {1: "Production"}), None)
    assert [(c.moved, c.after, c.archive) for c in changes] == [("unrecorded", 2, (1,))]
    changes = plan("m", registry(None, {3: "Production"}), None)
    assert [(c.moved, c.after) for c in changes] == [("unrecorded", 3)]


def test_alias_and_stage_moved_to_different_versions_is_a_conflict_unless_resolving() -> None:
    versions = registry(2, {3: "Production"})
    with pytest.raises(
        HandConflict, match="@production was moved by hand to version 2 and stage Production to version 3"
    ):
        plan("m", versions, {"production": 1, "staging": None})
    assert plan("m", versions, {"production": 1, "staging": None}, resolving="production") == []
