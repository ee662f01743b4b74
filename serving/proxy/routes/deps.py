"""What routes take from the request: the runtime and the caller's key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from serving.errors import Unavailable
from serving.proxy.auth import identify, permit
from serving.proxy.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The runtime the app was created around."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _requiring(scope: str) -> Callable[[Request, Runtime], str | None]:
    def require(request: Request, runtime: RuntimeDep) -> str | None:
        """The caller's key id; 401 when keys are configured and none matches, 403 without the scope."""
        key = identify(runtime.keys, request.headers.get("x-api-key"))
        return permit(key, scope, f"{request.method} {request.url.path}")

    return require


Reader = Annotated[str | None, Depends(_requiring("read"))]  # The log, records, model facts, reports.
Feedback = Annotated[str | None, Depends(_requiring("feedback"))]  # Observed outcomes.


def not_running(runtime: Runtime) -> Unavailable:
    """The 503 while no model server is running."""
    return Unavailable(f"the model server is not running: {runtime.not_ready}")
