"""The drift job's summary stays valid JSON when a statistic is undefined."""

from __future__ import annotations

import json

from monitoring.report_run import finite


def test_undefined_statistics_become_null() -> None:
    summary = {"psi": float("nan"), "features": [{"p": float("inf"), "n": 3}], "name": "x"}
    assert finite(summary) == {"psi": None, "features": [{"p": None, "n": 3}], "name": "x"}
    json.dumps(finite(summary), allow_nan=False)
