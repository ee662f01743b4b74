"""Schemathesis against the proxy app in process (fast tier): every operation, answers as documented.

The same checks as `test_fuzz.py`, which runs them against a real proxy, `mlflow models serve` and
PostgreSQL; here the model server is the fake one and the log store SQLite, so this runs in seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.generation.case import Case

from serving.app import create_app
from serving.runtime import Runtime
from tests.serving.conftest import HEADERS
from tests.serving.test_fuzz import OPERATIONS

EXAMPLES = 50
# GET /drift reads the latest drift report from MLflow's tracking server; test_fuzz.py covers it.
IN_PROCESS = [operation for operation in OPERATIONS if operation != ("GET", "/drift")]


@pytest.fixture
def api(app_runtime: Runtime) -> Iterator[schemathesis.BaseSchema]:
    """The app's own schema, served in process, with its log writer running (so /ready is 200)."""
    app_runtime.writer.start()
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(app_runtime))
    asyncio.run(app_runtime.close())


@pytest.mark.parametrize(("method", "path"), IN_PROCESS)
def test_no_server_error_and_every_answer_as_documented(
    api: schemathesis.BaseSchema, method: str, path: str
) -> None:
    @given(case=api[path][method].as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def fuzz(case: Case[Any]) -> None:
        # As in test_fuzz.py: a body that fits the schema may still not fit the model; that is a 400.
        case.call_and_validate(headers=HEADERS, excluded_checks=[positive_data_acceptance])

    fuzz()
