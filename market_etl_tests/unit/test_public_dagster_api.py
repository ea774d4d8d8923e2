"""Production code uses Dagster's public API only: `dagster._core` (and any `dagster._...`) may change in any release."""
import ast
from pathlib import Path

import market_etl

PACKAGE_DIR = Path(market_etl.__file__).resolve().parent


def _private_dagster_imports(path: Path, root: Path = PACKAGE_DIR.parent) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                 [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        found += [f"{path.relative_to(root)}: {n}" for n in names
                  if n.split(".")[0].startswith("dagster") and any(p.startswith("_") for p in n.split(".")[1:])]
    return found


def test_no_private_dagster_import_in_market_etl():
    private = [hit for path in sorted(PACKAGE_DIR.rglob("*.py")) for hit in _private_dagster_imports(path)]
    assert not private, private


def test_the_check_sees_a_private_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from dagster._core.errors import DagsterPipesExecutionError\n")
    assert _private_dagster_imports(module, root=tmp_path) == ["m.py: dagster._core.errors"]
