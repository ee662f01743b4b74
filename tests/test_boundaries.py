"""Each package, and each part of `serving`, imports only what its layer allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

OURS = {"training", "registry_scripts", "serving", "logstore", "monitoring", "ui", "bench", "chaos", "tests"}
# What the parts of serving share; they import none of its sub-packages.
SHARED = {"serving.settings", "serving.errors", "serving.contracts", "serving.registry"}


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The dotted names a file imports, `from a import b` as `a.b`; relative imports resolved."""
    names = set()
    package = _module(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def files(prefix: str) -> list[Path]:
    """The files of a package or module given by dotted name."""
    path = REPO.joinpath(*prefix.split("."))
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _within(name: str, prefixes: set[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def ours(path: Path) -> set[str]:
    """What a file imports from this repository."""
    return {name for name in imports(path) if name.split(".")[0] in OURS}


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        # training -> pyfunc -> registry -> backend supervision -> proxy -> log store <- monitoring / ui
        ("training", {"training", "registry_scripts"}),
        ("registry_scripts", {"registry_scripts", "logstore"}),  # A rollout reads its live figures.
        ("logstore", {"logstore"}),
        ("serving", {"serving", "logstore", "registry_scripts"}),
        ("monitoring", {"monitoring", "logstore", "registry_scripts"}),
        ("ui", {"ui"}),  # The proxy's HTTP API only.
        ("bench", {"bench", "serving", "logstore", "training", "registry_scripts"}),
        ("chaos", {"chaos", "bench", "serving", "logstore", "training", "registry_scripts"}),
    ],
)
def test_package_boundaries(package: str, allowed: set[str]) -> None:
    found = {name for path in files(package) for name in ours(path) if not _within(name, allowed)}
    assert not found, f"{package} imports {sorted(found)}"


OUTSIDE = {"logstore", "registry_scripts"}


@pytest.mark.parametrize(
    ("part", "allowed"),
    [
        *((module, SHARED | OUTSIDE) for module in sorted(SHARED)),
        ("serving.documents", {"serving.documents"} | SHARED | {"registry_scripts"}),
        ("serving.batch", {"serving.batch"} | SHARED | OUTSIDE),
        ("serving.proxy", {"serving.proxy", "serving.documents"} | SHARED | OUTSIDE),
        # The one-file commands: the proxy's, and two that load or score without it.
        ("serving.__main__", {"serving.proxy"} | SHARED | OUTSIDE),
        ("serving.entities", SHARED | OUTSIDE),
        ("serving.score", SHARED | OUTSIDE),
    ],
)
def test_serving_layers(part: str, allowed: set[str]) -> None:
    found = {name for path in files(part) for name in ours(path) if not _within(name, allowed)}
    assert not found, f"{part} imports {sorted(found)}"


def test_every_serving_module_has_a_layer() -> None:
    layered = {*SHARED, "serving.documents", "serving.batch", "serving.proxy", "serving.__main__",
               "serving.entities", "serving.score", "serving"}  # fmt: skip
    modules = {_module(path) for path in (REPO / "serving").rglob("*.py")}
    assert {
        module for module in modules if not _within(module, layered - {"serving"}) and module != "serving"
    } == set()
