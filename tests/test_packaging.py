"""The install files agree with each other and with the MLproject."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import yaml

from tests.conftest import REPO


def test_conda_env_lists_the_same_requirements_as_pyproject() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())
    assert "python=3.11" in conda["dependencies"]
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert "-e .[spark]" in pip_section  # The batch entry point runs Spark.
    assert sorted(r for r in pip_section if not r.startswith("-e .")) == sorted(declared)


def test_mlproject_entry_points_use_the_conda_env() -> None:
    project = yaml.safe_load((REPO / "MLproject").read_text())
    assert project["conda_env"] == "conda.yaml"
    expected = {
        "main",
        "train",
        "promote",
        "rollback",
        "score",
        "batch",
        "serve",
        "drift",
        "compare",
        "fairness",
    }
    assert expected <= set(project["entry_points"])
    assert "--trials {trials}" in project["entry_points"]["train"]["command"]


def test_the_fast_tier_collects_without_the_spark_extra() -> None:
    """Without PySpark, Spark's tests are skipped with a reason; nothing fails to import."""
    blocked = "import sys; sys.modules['pyspark'] = sys.modules['py4j'] = None; import pytest; "
    options = ["--collect-only", "-q", "-rs", "-n", "0", "-m", "not integration"]
    done = subprocess.run(
        [sys.executable, "-c", f"{blocked}sys.exit(pytest.main({options!r}))"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "SKIPPED" in done.stdout and "needs the Spark extra" in done.stdout, done.stdout[-3000:]
