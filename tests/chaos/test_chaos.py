"""`python -m chaos` against the session's model: every fault injected for real, every promise checked."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from chaos.__main__ import main
from registry_scripts.actions import promote
from tests.conftest import POSTGRES_ADMIN, register_again
from training.job import TrainingOutcome

SCENARIOS = ["database_outage", "slow_database", "backend_kill", "proxy_kill", "spool_full"]


@pytest.fixture(scope="module")
def outcomes(
    client: MlflowClient, attrition: TrainingOutcome, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """One fault run, as a user runs it, on a model of its own; its outcomes by scenario."""
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    promote(client, name, register_again(client, attrition, name), "production", user="test", reason="chaos")
    out = tmp_path_factory.mktemp("chaos")
    status = main(["--model", name, "--database-url", POSTGRES_ADMIN, "--output-dir", str(out)])
    results = json.loads((out / "results.json").read_text())
    table = [line for line in (out / "RESULTS.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(SCENARIOS)
    assert status == (1 if any(o["broken"] for o in results["outcomes"]) else 0)
    return {outcome["name"]: outcome for outcome in results["outcomes"]}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fault_keeps_every_promise(outcomes: dict[str, dict[str, Any]], scenario: str) -> None:
    outcome = outcomes[scenario]
    assert outcome["broken"] == []
    assert outcome["answered"] > 0
    assert outcome["logged"] == outcome["answered"]
    assert outcome["lost"] == outcome["duplicated"] == 0


def test_the_faults_really_happened(outcomes: dict[str, dict[str, Any]]) -> None:
    assert outcomes["backend_kill"]["refused"].get("503", 0) > 0
    assert outcomes["backend_kill"]["seconds"]["ready_503_after"] <= 2
    assert outcomes["proxy_kill"]["seconds"]["records_in_spool_at_kill"] > 0
    assert outcomes["spool_full"]["refused"].get("503", 0) > 0
    assert outcomes["slow_database"]["seconds"]["slowest_request_during"] < 1


def test_bad_options_stop_with_a_usage_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--clients", "0", "--output-dir", str(tmp_path)])
    assert stop.value.code == 2
    assert "--clients >= 1" in capsys.readouterr().err
