"""The code stays ruff- and mypy-clean; the pyfunc ships only third-party imports."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy", "."]],
    ids=" ".join,
)
def test_static_checks_pass(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_pyfunc_imports_only_third_party_code() -> None:
    tree = ast.parse((REPO / "training" / "explainable_model.py").read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert roots <= {
        "__future__",
        "itertools",
        "json",
        "os",
        "typing",
        "joblib",
        "mlflow",
        "numpy",
        "pandas",
        "sklearn",
        "xgboost",
    }
