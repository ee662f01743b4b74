"""Changes made by hand in MLflow's UIs: recognised, mirrored, recorded, never undone; gated rollback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from registry_scripts.registry import UNKNOWN_USER
from tests.conftest import subprocess_env
from tests.registry_scripts.test_promotion import cli, stage_and_alias
from tests.serving.conftest import wait_for


def promote(capsys: pytest.CaptureFixture[str], name: str, version: str, *extra: str) -> str:
    code, out, err = cli(
        capsys, "promote", "--model", name, "--version", version, "--to", "production", *extra
    )
    assert code == 0, err
    return out


def history(client: MlflowClient, name: str, version: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(client.get_model_version(name, version).tags["audit.history"])
    return entries


def test_an_alias_moved_in_the_ui_is_mirrored_and_survives_promote(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    three_in_production_first: tuple[str, str, str],
) -> None:
    first, second, third = three_in_production_first
    client.set_registered_model_alias(model_name, "production", second)  # What MLflow 3's UI does.

    code, out, _ = cli(capsys, "list", "--model", model_name)
    assert code == 0
    assert f"pending: @production was moved by hand from version {first} to version {second}" in out
    assert f"version(s) {first} left Production for version {second} (archived)" in out
    assert "at once" not in out  # Only one version was ever in the Production stage.

    code, out, _ = cli(capsys, "promote", "--model", model_name, "--version", third, "--to", "staging")
    assert code == 0, out
    assert f"warning: @production was moved by hand from version {first} to version {second}" in out
    assert stage_and_alias(client, model_name, "Production") == (second, second)  # Not undone.
    assert stage_and_alias(client, model_name, "Staging") == (third, third)
    assert client.get_model_version(model_name, first).current_stage == "Archived"
    manual = history(client, model_name, second)[-1]
    assert manual["manual"] is True and manual["by"] == UNKNOWN_USER and manual["recognised_by"] == "promote"
    assert "MLflow's UI (alias)" in str(manual["reason"])
    assert history(client, model_name, first)[-1]["action"].startswith("left Production by hand")

    code, out, _ = cli(capsys, "list", "--model", model_name)
    row = next(line for line in out.splitlines() if line.startswith(second))
    assert "@production" in row and "by hand" in row and "pending" not in out


def test_a_legacy_stage_move_is_mirrored_to_the_alias_and_two_in_production_are_resolved(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    add_good_version: Callable[[str], str],
) -> None:
    first, second = add_good_version(model_name), add_good_version(model_name)
    promote(capsys, model_name, first)
    # The legacy dialog's "archive existing versions" box is unchecked by default.
    client.transition_model_version_stage(model_name, second, "Production", archive_existing_versions=False)

    code, out, _ = cli(capsys, "sync", "--model", model_name)
    assert code == 0
    assert f"stage Production was changed by hand from version {first} to version {second}" in out
    assert f"2 versions were in Production at once, version(s) {first} archived" in out
    assert stage_and_alias(client, model_name, "Production") == (second, second)
    assert client.get_model_version(model_name, first).current_stage == "Archived"
    manual = history(client, model_name, second)[-1]
    assert manual["manual"] is True and manual["changed_at"]  # MLflow timed the transition.
    assert cli(capsys, "sync", "--model", model_name)[1].splitlines() == [
        f"{model_name}: aliases and stages in step"
    ]

    code, out, _ = cli(capsys, "rollback", "--model", model_name)
    assert code == 0 and f"version {first} is in Production" in out and f"(was version {second})" in out
    assert stage_and_alias(client, model_name, "Production") == (first, first)


def test_rollback_skips_a_version_that_reached_production_by_hand(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    three_in_production_first: tuple[str, str, str],
) -> None:
    first, by_hand, third = three_in_production_first
    client.set_registered_model_alias(model_name, "production", by_hand)
    promote(capsys, model_name, third)  # Mirrors the hand move first, then replaces it.

    code, out, _ = cli(capsys, "list", "--model", model_name)
    gates = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "passed" in gates[first] and "passed" in gates[third] and "by hand" in gates[by_hand]

    code, out, _ = cli(capsys, "rollback", "--model", model_name, "--force")
    assert code == 0 and "skipped" not in out
    assert stage_and_alias(client, model_name, "Production") == (by_hand, by_hand)

    promote(capsys, model_name, third)
    code, out, _ = cli(capsys, "rollback", "--model", model_name)
    assert code == 0
    assert f"warning: skipped version {by_hand}: it reached Production by hand" in out
    assert stage_and_alias(client, model_name, "Production") == (first, first)


def test_alias_and_stage_moved_by_hand_to_different_versions_stop_every_command(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    three_in_production_first: tuple[str, str, str],
) -> None:
    first, second, third = three_in_production_first
    client.set_registered_model_alias(model_name, "production", second)
    client.transition_model_version_stage(model_name, third, "Production", archive_existing_versions=True)

    expected = (
        f"@production was moved by hand to version {second} and stage Production to version {third} "
        f"(both were version {first} when last recorded)"
    )
    for args in (
        ["list", "--model", model_name],
        ["sync", "--model", model_name],
        ["rollback", "--model", model_name],
        ["promote", "--model", model_name, "--version", first, "--to", "staging"],
    ):
        code, _, err = cli(capsys, *args)
        assert code == 2 and expected in err and "--to production" in err and "Traceback" not in err, args
        assert len(err.strip().splitlines()) == 1
    assert str(client.get_registered_model(model_name).aliases["production"]) == second  # Nothing moved.

    code, out, _ = cli(capsys, "promote", "--model", model_name, "--version", third, "--to", "production")
    assert code == 0, out
    assert stage_and_alias(client, model_name, "Production") == (third, third)
    assert cli(capsys, "list", "--model", model_name)[0] == 0


def test_beats_baseline_gate_refuses_a_version_worse_than_its_baseline(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    add_good_version: Callable[[str], str],
    attrition: object,
) -> None:
    good = add_good_version(model_name)
    source = client.get_model_version(model_name, good).source or ""
    with mlflow.start_run() as run:  # A training run whose model lost to its logistic baseline.
        mlflow.log_metrics({"cv_roc_auc": 0.770, "baseline_cv_roc_auc": 0.804, "holdout_roc_auc": 0.9})
    worse = str(client.create_model_version(model_name, source=source, run_id=run.info.run_id).version)
    client.set_model_version_tag(model_name, worse, "baseline_tolerance", "0.01")

    code, _, err = cli(capsys, "promote", "--model", model_name, "--version", worse, "--to", "production")
    assert code == 1 and "beats-baseline: cv_roc_auc 0.7700 vs the logistic baseline's 0.8040" in err
    code, out, _ = cli(
        capsys, "promote", "--model", model_name, "--version", worse, "--to", "production", "--force"
    )
    assert code == 0 and "gate beats-baseline: FAILED (forced)" in out
    tags = client.get_model_version(model_name, worse).tags
    assert tags["gates.production"] == "forced past beats-baseline"
    gates = {g["gate"]: g["passed"] for g in history(client, model_name, worse)[-1]["gates"]}
    assert gates == {
        "loads-and-explains": True, "holdout-roc-auc": True, "beats-baseline": False, "live-shadow": True,
        "fairness": True,  # Its run assessed no groups: not assessed, said so.
    }  # fmt: skip


def test_sync_every_mirrors_a_hand_move_as_a_sidecar(
    client: MlflowClient, model_name: str, three_in_production_first: tuple[str, str, str], tmp_path: Path
) -> None:
    first, second, _ = three_in_production_first
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "registry_scripts", "sync", "--model", model_name, "--every", "0.5"],
        env=subprocess_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        client.set_registered_model_alias(model_name, "production", second)
        wait_for(
            lambda: client.get_model_version(model_name, second).current_stage == "Production",
            seconds=60,
            message="the sidecar to mirror the alias to the stage",
        )
    finally:
        sidecar.terminate()
        out, err = sidecar.communicate(timeout=30)
    assert sidecar.returncode == 0, err
    assert f"mirrored: @production was moved by hand from version {first} to version {second}" in out
    assert client.get_model_version(model_name, first).current_stage == "Archived"
    assert history(client, model_name, second)[-1]["recognised_by"] == "sync"  # The round was finished.
