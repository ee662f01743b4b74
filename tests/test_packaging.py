"""The install files agree with each other and with the MLproject."""

from __future__ import annotations

import tomllib

import yaml

from tests.conftest import REPO


def test_conda_env_lists_the_same_requirements_as_pyproject() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())
    assert "python=3.11" in conda["dependencies"]
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(r for r in pip_section if r != "-e .") == sorted(declared)


def test_mlproject_entry_points_use_the_conda_env() -> None:
    project = yaml.safe_load((REPO / "MLproject").read_text())
    assert project["conda_env"] == "conda.yaml"
    assert {"main", "train", "promote", "rollback", "score", "serve", "drift"} <= set(project["entry_points"])
    assert "--trials {trials}" in project["entry_points"]["train"]["command"]
