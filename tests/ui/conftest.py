"""Fixtures of the UI tests: a real proxy on a served model, with the entity table loaded."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from mlflow.tracking import MlflowClient

from serving.entities import main as load_entities
from tests.conftest import REPO, register_again
from tests.serving.conftest import Proxy, log_db, log_engine, served, start_proxy, workdir
from training.job import TrainingOutcome

__all__ = ["log_db", "log_engine", "served", "start_proxy", "workdir"]


@pytest.fixture(scope="module")
def proxy(served: str, log_db: str, start_proxy: Callable[..., Proxy]) -> Proxy:
    """The attrition proxy, with every employee in its entity table."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", log_db)
        assert load_entities(["--model", served, "--input", str(REPO / "data" / "attrition.csv")]) == 0
    return start_proxy(served, log_db)


@pytest.fixture(scope="module")
def credit_proxy(
    client: MlflowClient, credit: TrainingOutcome, log_db: str, start_proxy: Callable[..., Proxy]
) -> Proxy:
    """A proxy on the credit model, with every client in its entity table."""
    name = f"served-credit-{uuid.uuid4().hex[:8]}"
    client.set_registered_model_alias(name, "production", register_again(client, credit, name))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", log_db)
        assert load_entities(["--model", name, "--input", str(REPO / "data" / "credit.csv")]) == 0
    return start_proxy(name, log_db)
