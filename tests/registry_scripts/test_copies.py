"""MLflow's "Promote model" (a copy into another registered model): the copy is judged as its own model's."""

from __future__ import annotations

import json
from collections.abc import Callable

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from registry_scripts.registry import GATES_TAG, HISTORY_TAG, OWNER_TAG, versions
from tests.registry_scripts.test_hand_changes import promote
from tests.registry_scripts.test_promotion import cli, stage_and_alias


def test_a_copied_version_brings_no_gates_or_audit_of_its_own_and_is_promoted_on_its_model(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    add_good_version: Callable[[str], str],
) -> None:
    first, second = add_good_version(model_name), add_good_version(model_name)
    for version in (first, second):
        code, _, err = cli(
            capsys, "promote", "--model", model_name, "--version", version, "--to", "production"
        )
        assert code == 0, err
    target = f"{model_name}-prod"
    # What MLflow 3's "Promote model" button sends: a copy with the source's tags (gates, audit and all).
    copied = client.copy_model_version(f"models:/{model_name}/{second}", target)
    number = str(copied.version)
    assert copied.source == f"models:/{model_name}/{second}"
    assert client.get_model_version(target, number).tags[GATES_TAG] == "passed"  # As copied.

    [found] = versions(client, target)
    assert found.copied_from == (model_name, int(second))
    assert GATES_TAG not in found.tags and HISTORY_TAG not in found.tags and not found.gated
    code, out, _ = cli(capsys, "list", "--model", target)
    row = next(line for line in out.splitlines() if line.startswith(number))
    assert code == 0 and f"{model_name} v{second}" in row and "passed" not in row and "promote" not in row

    code, out, err = cli(capsys, "promote", "--model", target, "--version", number, "--to", "production")
    assert code == 0, err
    tags = client.get_model_version(target, number).tags
    assert tags[OWNER_TAG] == target and tags[GATES_TAG] == "passed"  # Its own gates, run on its model.
    assert [entry["action"] for entry in json.loads(tags[HISTORY_TAG])] == ["promoted to Production"]
    assert stage_and_alias(client, target, "Production") == (number, number)
    assert json.loads(
        client.get_model_version(model_name, second).tags[HISTORY_TAG]
    )  # The source is untouched.

    # A second copy: rollback on the target goes back to the first copy, which passed its own gates.
    again = client.copy_model_version(f"models:/{model_name}/{first}", target)
    promote(capsys, target, str(again.version))
    code, out, err = cli(capsys, "rollback", "--model", target)
    assert code == 0, err
    assert stage_and_alias(client, target, "Production") == (number, number)
    assert cli(capsys, "sync", "--model", target)[1].splitlines() == [f"{target}: aliases and stages in step"]
    loaded = mlflow.pyfunc.load_model(
        f"models:/{target}@production"
    )  # What serving loads: the source's files.
    assert loaded.metadata.run_id == client.get_model_version(model_name, second).run_id


def test_a_copy_promoted_by_force_says_so(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    add_good_version: Callable[[str], str],
) -> None:
    version = add_good_version(model_name)
    promote(capsys, model_name, version)
    target = f"{model_name}-prod"
    number = str(client.copy_model_version(f"models:/{model_name}/{version}", target).version)
    client.set_registered_model_alias(target, "production", number)  # Moved by hand, never gated.
    code, out, _ = cli(capsys, "list", "--model", target)
    assert code == 0 and "pending: @production and stage Production disagree" in out, out
    assert "the alias wins" in out
    row = next(line for line in out.splitlines() if line.startswith(number))
    assert "passed" not in row
