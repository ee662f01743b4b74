"""The one error of the monitoring commands: a message for the user and exit status 2."""

from __future__ import annotations


class MonitoringError(Exception):
    """The command cannot do what was asked; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
