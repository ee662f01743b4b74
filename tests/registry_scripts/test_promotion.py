"""Promotion, refusal, force and rollback through the CLI, against a real SQLite registry."""

from __future__ import annotations

import json
from collections.abc import Callable

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

from registry_scripts import fairness
from registry_scripts.__main__ import main
from tests.conftest import config_with
from training.job import train


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


def gate_entry(client: MlflowClient, name: str, version: str, gate: str) -> dict[str, object]:
    """The named gate's entry in the version's last promotion record."""
    history = json.loads(client.get_model_version(name, version).tags["audit.history"])
    return next(g for g in history[-1]["gates"] if g["gate"] == gate)


def test_the_fairness_gate_warns_by_default_and_refuses_when_the_config_says(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    add_good_version: Callable[[str], str],
) -> None:
    good = add_good_version(model_name)  # The shipped attrition config: `gate: warn`.
    code, out, _ = cli(capsys, "promote", "--model", model_name, "--version", good, "--to", "production")
    assessed = fairness.recorded(str(client.get_model_version(model_name, good).run_id))
    assert code == 0 and assessed is not None and assessed["policy"]["gate"] == "warn"
    line = next(line for line in out.splitlines() if line.startswith("gate fairness: "))
    assert ("passed with a WARNING" in line) == bool(
        assessed["flagged"]
    ) and "demographic-parity ratio" in line
    assert gate_entry(client, model_name, good, "fairness")["passed"] is True
    assert gate_entry(client, model_name, good, "fairness").get("warning", False) == bool(assessed["flagged"])

    # Every group's rate must equal the highest (min_ratio 1.0): flagged for sure, and refused.
    strict = fairness.FairnessPolicy.model_validate(
        {"attributes": {"Gender": {}, "Age": {"bands": [30, 40, 50]}}, "min_ratio": 1.0, "gate": "refuse"}
    )
    refused = train(
        config_with("attrition", model_name=model_name, fairness=strict), trials=1, cv_folds=2
    ).version
    code, _, err = cli(capsys, "promote", "--model", model_name, "--version", refused, "--to", "production")
    assert code == 1 and "fairness: " in err and "the config's fairness.gate is refuse" in err
    assert "under the four-fifths rule on the holdout" in err and "Traceback" not in err
    assert stage_and_alias(client, model_name, "Production") == (good, good)

    code, out, _ = cli(
        capsys, "promote", "--model", model_name, "--version", refused, "--to", "production", "--force",
        "--reason", "reviewed by the works council",
    )  # fmt: skip
    assert code == 0 and "gate fairness: FAILED (forced)" in out
    entry = gate_entry(client, model_name, refused, "fairness")
    assert entry["passed"] is False and "refuse" in str(entry["detail"])
    assert "forced past" in client.get_model_version(model_name, refused).tags["audit.last_reason"]
