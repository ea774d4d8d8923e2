"""core is the pure layer: imports go defs -> resources, stages -> core, never back, and never to Dagster."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import market_etl.core

CORE = Path(market_etl.core.__file__).parent
FORBIDDEN = ("dagster", "market_etl.lake", "market_etl.resources", "market_etl.defs", "market_etl.stages",
             "market_etl.definitions", "market_etl_devtools")


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def forbidden_imports(source: str) -> list[str]:
    return sorted(m for m in imported_modules(source)
                  if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_imports_neither_the_lake_nor_dagster_nor_outer_layers(path):
    assert forbidden_imports(path.read_text()) == [], f"{path.name} reaches outside core"


def test_the_check_sees_a_forbidden_import():
    assert forbidden_imports("from market_etl.lake import Lake\nimport dagster as dg\nimport os\n") == [
        "dagster", "market_etl.lake"]
    assert forbidden_imports("def f():\n    from market_etl.resources.sql import X\n") == ["market_etl.resources.sql"]
