"""Shared fixtures: one MLflow store and one trained model per use case for the whole session."""

from __future__ import annotations

import os
import pickle
import shutil
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import mlflow
import psycopg2
import pytest
from filelock import FileLock
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


MODELS = ("attrition", "credit")


@contextmanager
def using_store(home: Path) -> Iterator[Path]:
    """MLflow's tracking store and artifacts in `home` (SQLite, ./mlruns), as every command sees them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)  # Artifacts default to ./mlruns next to the store.
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mlflow.set_tracking_uri(f"sqlite:///{home}/mlflow.db")
        yield home


def trained_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, TrainingOutcome]]:
    """Both models trained once per test run, whichever worker comes first; the others wait and reuse them.

    The store is never used as is: each worker copies its database (the artifacts stay here, where
    the copies' paths point), so what a test registers or promotes stays in its own worker.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # One run's workers share it.
    store, done = shared / "trained", shared / "trained" / "outcomes.pickle"
    with FileLock(shared / "trained.lock"):
        if not done.exists():
            store.mkdir(exist_ok=True)
            with using_store(store):
                outcomes = {name: train(load_config(name), **TINY) for name in MODELS}
            done.write_bytes(pickle.dumps(outcomes))
    return store, pickle.loads(done.read_bytes())


MODEL_FIXTURES = {"attrition", "credit", "attrition_model", "credit_model"}


def _needs_models(item: pytest.Item) -> bool:
    """An integration test, or one that asks for a model by name (`request.getfixturevalue(param)`)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    named = {value for value in params.values() if isinstance(value, str)}
    return item.get_closest_marker("integration") is not None or bool(named & MODEL_FIXTURES)


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh SQLite tracking store and artifact directory, used by every test.

    When the run holds integration tests, it starts as a copy of the run's trained store: the
    attrition and credit models, each version 1 of its registered model.
    """
    home = tmp_path_factory.mktemp("mlflow")
    if any(_needs_models(item) for item in request.session.items):
        store, outcomes = trained_store(tmp_path_factory)
        shutil.copyfile(store / "mlflow.db", home / "mlflow.db")
        SEEDED.update(outcomes)
    with using_store(home):
        yield home


SEEDED: dict[str, TrainingOutcome] = {}  # The models this worker's store was seeded with, or trained in it.


def _trained(name: str) -> TrainingOutcome:
    """A model of the session's store: seeded with it, or (a run of fast tests only) trained in it now."""
    if name not in SEEDED:
        SEEDED[name] = train(load_config(name), **TINY)
    return SEEDED[name]


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
    """The attrition model, trained once per run with a tiny budget."""
    return _trained("attrition")


@pytest.fixture(scope="session")
def credit(mlflow_store: Path) -> TrainingOutcome:
    """The credit model, trained once per run with a tiny budget."""
    return _trained("credit")


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
