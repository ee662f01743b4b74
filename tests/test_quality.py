"""The code stays ruff- and mypy-clean; the pyfunc ships only third-party imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


def imported_roots(path: Path) -> set[str]:
    """The top-level packages a module imports."""
    tree = ast.parse(path.read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return roots | {module.split(".")[0] for module in modules}


def test_the_arrow_scorer_ships_to_executors_without_our_code() -> None:
    """It is pickled by value: an executor with the model's requirements runs it."""
    found = imported_roots(REPO / "serving" / "batch" / "arrow.py")
    standard = {"__future__", "collections", "sys", "types", "typing"}
    # pyspark: only its TaskContext, inside a task, where the executor's own PySpark provides it.
    assert found <= standard | {"mlflow", "numpy", "pandas", "pyarrow", "pyspark"}


def test_the_pyfunc_imports_only_third_party_code() -> None:
    roots = imported_roots(REPO / "training" / "explainable_model.py")
    assert roots <= {
        "__future__",
        "itertools",
        "json",
        "os",
        "re",
        "typing",
        "joblib",
        "mlflow",
        "numpy",
        "pandas",
        "sklearn",
        "xgboost",
    }
