"""Errors of the log store; they carry no HTTP status (the proxy and the CLIs translate them)."""

from __future__ import annotations


class LogStoreError(Exception):
    """Base error of the log store."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StoreConfigError(LogStoreError):
    """The log store cannot be used as configured (a bad URL, a spool directory in use)."""


class StoreUnavailable(LogStoreError):
    """The database does not answer, or refuses the migration."""


class SpoolFull(StoreUnavailable):
    """The spool reached its size bound."""

    def __init__(self) -> None:
        super().__init__("the prediction log spool is full; the log store has been down too long")


class SpoolWriteFailed(StoreUnavailable):
    """The spool could not append a record (disk full, read-only file system)."""


class InvalidOutcome(LogStoreError):
    """An observed outcome does not fit the model (an unknown label)."""


class UnknownPrediction(LogStoreError):
    """An outcome names a prediction that is not in the log."""
