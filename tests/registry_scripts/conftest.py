"""Fresh registered models per test, built from the session's trained versions."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from mlflow.tracking import MlflowClient

from registry_scripts.__main__ import main
from tests.conftest import config_with, register_again
from training.config import DataConfig
from training.job import TrainingOutcome, train

WEAK_FEATURES = {"DailyRate", "HourlyRate", "PerformanceRating"}


@pytest.fixture
def model_name() -> str:
    """A registered-model name no other test uses."""
    return f"flow-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def add_good_version(client: MlflowClient, attrition: TrainingOutcome) -> Callable[[str], str]:
    """Register the session's attrition model again under a name; returns the new version."""

    def add(name: str) -> str:
        return register_again(client, attrition, name)

    return add


@pytest.fixture
def add_weak_version(attrition: TrainingOutcome) -> Callable[[str], str]:
    """Train and register a deliberately weak attrition model (three uninformative features)."""

    def add(name: str) -> str:
        base = config_with("attrition")
        columns = set(base.data.path.read_text().splitlines()[0].split(","))
        drop = tuple(sorted(columns - WEAK_FEATURES - {"Attrition", "employee_id"}))
        data: DataConfig = base.data.model_copy(update={"drop_columns": drop})
        # Its reason catalogue would name the dropped inputs, which training refuses: it has none.
        weak = base.model_copy(update={"model_name": name, "data": data, "reasons": None})
        return train(weak, trials=1, cv_folds=2).version

    return add


@pytest.fixture
def three_in_production_first(
    capsys: pytest.CaptureFixture[str], model_name: str, add_good_version: Callable[[str], str]
) -> tuple[str, str, str]:
    """Three good versions of a fresh model, the first promoted to Production by the scripts."""
    versions = (add_good_version(model_name), add_good_version(model_name), add_good_version(model_name))
    assert main(["promote", "--model", model_name, "--version", versions[0], "--to", "production"]) == 0
    capsys.readouterr()
    return versions
