"""Shared fixtures: one MLflow store and one trained model per use case for the whole session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import mlflow
import psycopg2
import pytest
from mlflow.pyfunc import PyFuncModel
from mlflow.tracking import MlflowClient

from bench.logcheck import fresh_database as scratch_database
from training.config import UseCaseConfig, load_config
from training.job import TrainingOutcome, train

REPO = Path(__file__).resolve().parents[1]
TINY = {"trials": 2, "cv_folds": 3}
POSTGRES_ADMIN = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


# A test that needs any of these (directly or through other fixtures) is in the integration tier.
INTEGRATION_FIXTURES = {
    "attrition", "credit", "postgres_url", "log_db", "start_proxy", "spark", "tracking_server", "team",
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that train a model, start real processes or use PostgreSQL as `integration`."""
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh SQLite tracking store and artifact directory, used by every test."""
    home = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)  # Artifacts default to ./mlruns next to the store.
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mlflow.set_tracking_uri(f"sqlite:///{home}/mlflow.db")
        yield home


@pytest.fixture(scope="session")
def client(mlflow_store: Path) -> MlflowClient:
    """Client on the session store."""
    return MlflowClient()


def subprocess_env(**overrides: str) -> dict[str, str]:
    """This environment as an activated virtualenv has it, less the test process's MLflow run."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"}
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return {**env, **overrides}


def config_with(name: str, **changes: object) -> UseCaseConfig:
    """A shipped config with some top-level fields replaced."""
    return load_config(name).model_copy(update=changes)


@pytest.fixture(scope="session")
def attrition(mlflow_store: Path) -> TrainingOutcome:
    """The attrition model trained once with a tiny budget."""
    return train(load_config("attrition"), **TINY)


@pytest.fixture(scope="session")
def credit(mlflow_store: Path) -> TrainingOutcome:
    """The credit model trained once with a tiny budget."""
    return train(load_config("credit"), **TINY)


@pytest.fixture(scope="session")
def attrition_model(attrition: TrainingOutcome) -> PyFuncModel:
    """The registered attrition version, loaded once."""
    return mlflow.pyfunc.load_model(f"models:/attrition/{attrition.version}")


@pytest.fixture(scope="session")
def credit_model(credit: TrainingOutcome) -> PyFuncModel:
    """The registered credit version, loaded once."""
    return mlflow.pyfunc.load_model(f"models:/credit/{credit.version}")


def register_again(client: MlflowClient, outcome: TrainingOutcome, name: str) -> str:
    """Register a trained model's artifacts as a new version of `name`; returns the version."""
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    source = client.get_model_version(outcome.model_name, outcome.version).source
    assert source is not None
    return str(client.create_model_version(name, source=source, run_id=outcome.run_id).version)


def admin_sql(statement: str) -> None:
    """Run one statement as the PostgreSQL superuser, outside a transaction."""
    admin = psycopg2.connect(POSTGRES_ADMIN)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(statement)
    finally:
        admin.close()


def fresh_database() -> AbstractContextManager[str]:
    """A new, empty PostgreSQL database, dropped afterwards; yields its URL."""
    return scratch_database(POSTGRES_ADMIN, prefix="test")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    with fresh_database() as url:
        yield url
