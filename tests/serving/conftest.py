"""Serving tests use the session's attrition model in Production."""

from tests.test_clients import production

__all__ = ["production"]
