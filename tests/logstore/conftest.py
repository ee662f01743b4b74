"""Fixtures of the log store's tests: the serving fixtures, for the tests that run a real proxy."""

from __future__ import annotations

from tests.serving.conftest import log_db, log_engine, served, start_proxy, workdir

__all__ = ["log_db", "log_engine", "served", "start_proxy", "workdir"]
