"""Schemathesis against the proxy app in process (fast tier): every operation, answers as documented.

The same checks as `test_fuzz.py`, which runs them against a real proxy, `mlflow models serve` and
PostgreSQL; here the model server is the fake one and the log store SQLite, so this runs in seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import schemathesis

from serving.proxy.app import create_app
from serving.proxy.runtime import Runtime
from tests.serving.test_fuzz import OPERATIONS, fuzz_operation

EXAMPLES = 50
# GET /drift, /challenger and /model/card read MLflow's tracking server; test_fuzz.py covers them.
IN_PROCESS = [
    operation
    for operation in OPERATIONS
    if operation not in {("GET", "/drift"), ("GET", "/challenger"), ("GET", "/model/card")}
]


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
    fuzz_operation(api, method, path, examples=EXAMPLES)
