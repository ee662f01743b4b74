"""Promotion, refusal, force and rollback through the CLI, against a real SQLite registry."""

from __future__ import annotations

import json
from collections.abc import Callable

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

from registry_scripts.__main__ import main


def stage_and_alias(client: MlflowClient, name: str, stage: str) -> tuple[str | None, str | None]:
    """Version named by models:/name/Stage and by models:/name@alias."""
    staged = [
        str(v.version) for v in client.search_model_versions(f"name = '{name}'") if v.current_stage == stage
    ]
    aliases = client.get_registered_model(name).aliases
    return (staged[0] if staged else None), (
        str(aliases[stage.lower()]) if stage.lower() in aliases else None
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_promote_moves_stage_and_alias_together(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    add_good_version: Callable[[str], str],
) -> None:
    first, second = add_good_version(model_name), add_good_version(model_name)
    code, out, _ = cli(capsys, "promote", "--model", model_name, "--version", first, "--to", "staging")
    assert code == 0 and "now in Staging and @staging" in out
    assert stage_and_alias(client, model_name, "Staging") == (first, first)

    code, out, _ = cli(
        capsys,
        "promote",
        "--model",
        model_name,
        "--version",
        first,
        "--to",
        "production",
        "--reason",
        "q3 release",
    )
    assert code == 0
    assert "gate loads-and-explains: passed" in out and "gate holdout-roc-auc: passed" in out
    assert stage_and_alias(client, model_name, "Production") == (first, first)
    assert stage_and_alias(client, model_name, "Staging") == (None, None)  # it left Staging

    code, out, _ = cli(capsys, "promote", "--model", model_name, "--version", "latest", "--to", "production")
    assert code == 0 and f"replacing version {first}" in out
    assert stage_and_alias(client, model_name, "Production") == (second, second)
    assert client.get_model_version(model_name, first).current_stage == "Archived"
    assert (
        mlflow.pyfunc.load_model(f"models:/{model_name}/Production").metadata.run_id
        == mlflow.pyfunc.load_model(f"models:/{model_name}@production").metadata.run_id
    )

    tags = client.get_model_version(model_name, first).tags
    history = json.loads(tags["audit.history"])
    assert [h["action"] for h in history] == [
        "promoted to Staging",
        "promoted to Production",
        f"archived: replaced in Production by version {second}",
    ]
    assert history[1]["reason"] == "q3 release" and history[1]["by"] and history[1]["at"]


def test_refused_promotion_then_force_then_rollback(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    add_good_version: Callable[[str], str],
    add_weak_version: Callable[[str], str],
) -> None:
    good = add_good_version(model_name)
    assert cli(capsys, "promote", "--model", model_name, "--version", good, "--to", "production")[0] == 0
    weak = add_weak_version(model_name)

    code, out, err = cli(capsys, "promote", "--model", model_name, "--version", weak, "--to", "production")
    assert code == 1
    assert "refused" in err and "holdout-roc-auc" in err and "worse than the tolerance" in err
    assert "Traceback" not in err
    assert stage_and_alias(client, model_name, "Production") == (good, good)
    assert client.get_model_version(model_name, weak).current_stage == "None"

    code, out, _ = cli(
        capsys,
        "promote",
        "--model",
        model_name,
        "--version",
        weak,
        "--to",
        "production",
        "--force",
        "--reason",
        "business override",
    )
    assert code == 0 and "FAILED (forced)" in out
    assert stage_and_alias(client, model_name, "Production") == (weak, weak)
    assert (
        "forced past holdout-roc-auc" in client.get_model_version(model_name, weak).tags["audit.last_reason"]
    )

    code, out, _ = cli(capsys, "rollback", "--model", model_name, "--reason", "complaints")
    assert code == 0 and f"version {good} is in Production" in out
    assert stage_and_alias(client, model_name, "Production") == (good, good)
    assert (
        client.get_model_version(model_name, weak).tags["audit.last_action"]
        == f"rolled back: replaced by version {good}"
    )
    code, _, err = cli(capsys, "rollback", "--model", model_name)
    assert code == 2 and "nothing before it" in err


def test_a_transition_made_in_the_ui_is_respected(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    add_good_version: Callable[[str], str],
) -> None:
    first, second = add_good_version(model_name), add_good_version(model_name)
    assert cli(capsys, "promote", "--model", model_name, "--version", first, "--to", "production")[0] == 0
    # What the MLflow UI does: a stage transition that knows nothing of aliases.
    client.transition_model_version_stage(model_name, second, "Production", archive_existing_versions=True)

    code, out, _ = cli(capsys, "list", "--model", model_name)
    assert code == 0
    line = next(row for row in out.splitlines() if row.startswith(second))
    assert "Production" in line
    assert f"pending: stage Production was changed by hand from version {first} to version {second}" in out

    code, out, _ = cli(capsys, "rollback", "--model", model_name)
    assert code == 0 and f"(was version {second})" in out
    assert stage_and_alias(client, model_name, "Production") == (first, first)


def test_force_never_overrides_the_load_and_explain_gate(
    client: MlflowClient, capsys: pytest.CaptureFixture[str], model_name: str
) -> None:
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit([[0.0], [1.0]], [0, 1]), name="model", registered_model_name=model_name
        )
    code, _, err = cli(
        capsys,
        "promote",
        "--model",
        model_name,
        "--version",
        str(info.registered_model_version),
        "--to",
        "production",
        "--force",
    )
    assert code == 1 and "loads-and-explains" in err
    assert stage_and_alias(client, model_name, "Production") == (None, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["promote", "--model", "no-such-model", "--version", "1", "--to", "production"],
            "no registered model named 'no-such-model'",
        ),
        (["promote", "--model", "attrition", "--version", "999", "--to", "staging"], "has no version 999"),
        (
            ["promote", "--model", "attrition", "--version", "v1", "--to", "staging"],
            "expected a version number or 'latest'",
        ),
        (
            ["promote", "--model", "attrition", "--version", "1", "--to", "production", "--tolerance", "-1"],
            "--tolerance",
        ),
        (["rollback", "--model", "no-such-model"], "no registered model"),
    ],
)
def test_bad_requests_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], attrition: object, args: list[str], message: str
) -> None:
    code, _, err = cli(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_rollback_needs_a_production_version(
    capsys: pytest.CaptureFixture[str], model_name: str, add_good_version: Callable[[str], str]
) -> None:
    add_good_version(model_name)
    code, _, err = cli(capsys, "rollback", "--model", model_name)
    assert code == 2 and "nothing to roll back" in err
