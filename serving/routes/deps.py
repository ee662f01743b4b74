"""What routes take from the request: the runtime and the caller's key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serving.auth import identify
from serving.errors import Unavailable
from serving.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The runtime the app was created around."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def require_key(request: Request, runtime: RuntimeDep) -> str | None:
    """The caller's key id; 401 when keys are configured and none matches."""
    return identify(runtime.keys, request.headers.get("x-api-key"))


Key = Annotated[str | None, Depends(require_key)]


def not_running(runtime: Runtime) -> Unavailable:
    """The 503 while no model server is running."""
    return Unavailable(f"the model server is not running: {runtime.not_ready}")
