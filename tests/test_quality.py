"""The code stays ruff- and mypy-clean, and the packages keep their boundaries."""

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


def imported_roots(package: str) -> set[str]:
    roots = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
    return roots


OURS = {"training", "registry_scripts", "serving", "logstore", "monitoring", "ui", "bench", "chaos", "tests"}


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        # training -> pyfunc -> registry -> backend supervision -> proxy -> log store <- monitoring / ui
        ("training", {"training", "registry_scripts"}),
        ("registry_scripts", {"registry_scripts"}),
        ("logstore", {"logstore"}),
        ("serving", {"serving", "logstore", "registry_scripts"}),
        ("monitoring", {"monitoring", "logstore", "registry_scripts"}),
        ("ui", {"ui"}),  # The proxy's HTTP API only.
        ("bench", {"bench", "serving", "logstore", "training", "registry_scripts"}),
        ("chaos", {"chaos", "bench", "serving", "logstore", "training", "registry_scripts"}),
    ],
)
def test_package_boundaries(package: str, allowed: set[str]) -> None:
    assert imported_roots(package) & OURS <= allowed


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
