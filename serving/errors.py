"""Errors of the serving proxy; each carries its HTTP status and an MLflow-style error code."""

from __future__ import annotations

from logstore.errors import (
    InvalidOutcome,
    LogStoreError,
    StoreConfigError,
    StoreUnavailable,
    UnknownPrediction,
)

MAX_MESSAGE = 1000


class ServingError(Exception):
    """Base error; the app turns it into `{"error_code": ..., "message": ...}` with its status."""

    status_code = 500
    error_code = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        if len(message) > MAX_MESSAGE:  # Answered and stored: never as large as what the client sent.
            message = f"{message[: MAX_MESSAGE - 40]}... (cut from {len(message)} characters)"
        super().__init__(message)
        self.message = message


class ConfigurationError(ServingError):
    """The serving command cannot start as configured (exit code 2)."""


class BadRequest(ServingError):
    """The client's request is malformed or does not fit the model."""

    status_code = 400
    error_code = "BAD_REQUEST"

    def __init__(self, message: str, *, error_code: str = "BAD_REQUEST", status_code: int = 400) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.status_code = status_code


class Unauthenticated(ServingError):
    """Missing or wrong API key: one message for both."""

    status_code = 401
    error_code = "UNAUTHENTICATED"

    def __init__(self) -> None:
        super().__init__("a valid X-API-Key header is required")


class Forbidden(ServingError):
    """A valid key without the scope the route needs; the message names the scope."""

    status_code = 403
    error_code = "PERMISSION_DENIED"

    def __init__(self, key_id: str, scope: str) -> None:
        super().__init__(f"key {key_id!r} lacks the {scope!r} scope this endpoint needs")
        self.key_id = key_id


class NotFound(ServingError):
    """The entity, request or row does not exist."""

    status_code = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"


class PayloadTooLarge(ServingError):
    """The body is over the configured size."""

    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"


class ModelFailed(ServingError):
    """The model raised an unexpected error while scoring."""

    status_code = 500
    error_code = "INTERNAL_ERROR"


class Unavailable(ServingError):
    """The backend, the database or the log spool cannot serve the request now."""

    status_code = 503
    error_code = "TEMPORARILY_UNAVAILABLE"


class BackendTimeout(ServingError):
    """The backend did not answer in time."""

    status_code = 504
    error_code = "DEADLINE_EXCEEDED"


class ClientClosed(ServingError):
    """The client hung up before its request was read or answered (nginx's 499; nothing is sent)."""

    status_code = 499
    error_code = "CLIENT_CLOSED_REQUEST"


def from_store(exc: LogStoreError) -> ServingError:
    """The HTTP error for a log-store error."""
    kinds: list[tuple[type[LogStoreError], type[ServingError]]] = [
        (InvalidOutcome, BadRequest), (UnknownPrediction, NotFound),
        (StoreUnavailable, Unavailable), (StoreConfigError, ConfigurationError),
    ]  # fmt: skip
    for store_kind, ours in kinds:
        if isinstance(exc, store_kind):
            return ours(exc.message)
    return ServingError(exc.message)
