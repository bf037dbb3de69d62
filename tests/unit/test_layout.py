"""The package's shape, read from its source: which modules may import what, and what is
written once. A rule broken here is a drift the next maintainer would otherwise find."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "movierec"


def modules() -> dict[str, ast.Module]:
    """Every module of the package by dotted name, parsed (migrations are frozen: left out)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        if "migrations" in relative.parts:
            continue
        name = ".".join(relative.parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def imported(name: str, tree: ast.Module) -> set[str]:
    """The modules ``name`` imports anywhere in its body (in functions too)."""
    package = name if name in _packages() else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _packages() -> set[str]:
    return {
        ".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")
    }


def test_only_the_db_package_imports_the_driver():
    """STYLE rule 2: driver errors are caught, and driver calls made, inside movierec.db."""
    offenders = sorted(
        name
        for name, tree in modules().items()
        if not name.startswith("movierec.db")
        and any(m == "psycopg" or m.startswith("psycopg.") for m in imported(name, tree))
    )
    assert offenders == []


def test_an_errors_first_line_is_written_once():
    """One ``first_line``: copies of it had drifted (one gave "" for an empty message)."""
    defined = sorted(
        name
        for name, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name in ("first_line", "_first_line")
    )
    assert defined == ["movierec.errors"]
    inline = sorted(
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if "migrations" not in path.parts
        and re.search(r"str\(exc[^)]*\)\.strip\(\)\.splitlines\(\)", path.read_text())
    )
    assert inline == []


def test_one_module_runs_commands_to_completion():
    """One runner for external tools (argument lists, a timeout, ``LC_ALL=C``, one-line
    errors): the PostgreSQL tools, pgBackRest and HAProxy all go through it."""
    runners = sorted(
        name
        for name, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in ("run", "check_output", "check_call", "call")
        and isinstance(node.value, ast.Name)
        and node.value.id == "subprocess"
    )
    assert runners == ["movierec.processes"]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", ["movierec.web", "movierec.db", "movierec.ai", "movierec"])
def test_no_import_circles(package):
    """A module that needs another at import time, or inside a function to dodge a circle,
    is one room split in two: ``web/account`` and ``web/auth/security`` were, and
    ``ai/base``, ``ai/candidates`` and ``ai/dataset``."""
    parsed = modules()
    names = set(parsed)
    graph = {
        name: {m for m in imported(name, tree) if m in names and m != name}
        for name, tree in parsed.items()
        if name.startswith(package + ".") or package == "movierec"
    }
    # Edges into a package (its __init__, which only re-exports) are left out: every module
    # that imports a name of its own package would otherwise close a circle with it.
    assert cycles({n: {m for m in e if m not in _packages()} for n, e in graph.items()}) == []


def test_serving_a_model_imports_no_database_or_training_library():
    """A recommender loads and scores a model without psycopg, SQLAlchemy, surprise or
    implicit: they cost start-up time and memory in every worker, for a binary search."""
    serving = (
        "movierec.ai.loader", "movierec.ai.base", "movierec.ai.candidates",
        "movierec.ai.ranking", "movierec.ai.scorer", "movierec.ai.knn", "movierec.ai.ids",
        "movierec.ai.shard", "movierec.ai.slices", "movierec.ai.hot_rows",
    )  # fmt: skip
    script = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in serving)
        + "print(' '.join(sorted(m for m in ('psycopg', 'sqlalchemy', 'surprise', 'implicit')"
        " if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == []
