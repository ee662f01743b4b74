"""MLflow scoring-server answers that are not predictions, turned into our errors without stack traces."""

from __future__ import annotations

import json
import re

from serving.errors import BackendTimeout, BadRequest, ModelFailed, ServingError

MAX_MESSAGE = 600
# MLflow nests messages ("Failed to predict data '<the whole frame>'. Error: <the reason>").
_NESTED = re.compile(r"(?:^|\s)Error: ", re.MULTILINE)
# Wrappers that echo the whole input back; the reason is in what follows them.
_ECHOES = ("Failed to predict data", "Failed to enforce schema of data")


def clean_message(message: str) -> str:
    """The innermost reason of an MLflow error message, on one line, without data or traceback."""
    message = message.split("Traceback (most recent call last)", maxsplit=1)[0]
    parts = [" ".join(part.split()) for part in _NESTED.split(message) if part.strip()]
    kept = [part for part in parts if not part.startswith(_ECHOES)] or parts[-1:]
    return " Error: ".join(kept)[:MAX_MESSAGE] or "the model server rejected the request"


def translate(status_code: int, body: bytes) -> ServingError:
    """Our error for a non-200 answer of `mlflow models serve`."""
    error_code = None
    try:
        payload = json.loads(body)
        if isinstance(payload, dict):
            error_code = payload.get("error_code")
            text = str(payload.get("message", ""))
        else:
            text = str(payload)
    except ValueError:
        text = body.decode("utf-8", errors="replace")
    if status_code == 504:
        return BackendTimeout("the model did not answer within the scoring server's timeout")
    if 400 <= status_code < 500:
        return BadRequest(
            clean_message(text), error_code=str(error_code or "BAD_REQUEST"), status_code=status_code
        )
    return ModelFailed(f"the model failed to score the request: {clean_message(text)}")
