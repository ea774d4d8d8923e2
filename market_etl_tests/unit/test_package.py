"""`make package`: the Glue artifacts hold what the jobs run, on the Python they run, and Terraform uploads exactly them."""
from __future__ import annotations

import ast
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from market_etl_devtools import package
from market_etl_devtools.package import (PACKAGE, PYTHON_SHELL_MODULES, PYTHON_SHELL_PREINSTALLED, PackageError,
                                         build_all, python_shell_files, vermin_command)
from market_etl_tests.unit.test_terraform import TF_DIR, _flat, _resources

REPO = package.REPO_ROOT
TOOLING = ("market_etl_devtools", "mirror", "bench", "demo")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """What `make package` builds (without the wheel download check, which needs the package registry)."""
    return build_all(tmp_path_factory.mktemp("dist"), check_wheels=False)


@pytest.fixture(scope="module")
def bundle_dir(artifacts, tmp_path_factory):
    target = tmp_path_factory.mktemp("bundle")
    with zipfile.ZipFile(artifacts.python_shell_bundle) as bundle:
        bundle.extractall(target)
    return target


def test_python_shell_bundle_is_exactly_what_the_stages_import(bundle_dir):
    bundled = sorted(p.relative_to(bundle_dir).as_posix() for p in (bundle_dir / PACKAGE).rglob("*.py"))
    assert bundled == [p.relative_to(REPO).as_posix() for p in python_shell_files()]
    assert {"market_etl/stages/download.py", "market_etl/stages/unzip.py", "market_etl/core/download.py",
            "market_etl/lake/s3.py"} <= set(bundled)
    # Nothing of the orchestrator or the Spark job: they cannot install or run on 3.9.
    assert not any(name.startswith(("market_etl/defs/", "market_etl/resources/")) for name in bundled)
    assert "market_etl/stages/etl.py" not in bundled
    third_party = set()
    for path in (bundle_dir / PACKAGE).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                third_party |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                third_party.add(node.module.split(".")[0])
    third_party -= set(__import__("sys").stdlib_module_names) | {"__future__", PACKAGE}
    assert third_party <= set(PYTHON_SHELL_PREINSTALLED) | set(PYTHON_SHELL_MODULES)
    assert not third_party & {"dagster", "pyspark", "duckdb", "pyathena", "sqlglot"}
    metadata = (bundle_dir / "market_etl_python_shell-0.1.0.dist-info" / "METADATA").read_text()
    assert "Requires-Python: >=3.9" in metadata and "Requires-Dist" not in metadata


def test_python_shell_bundle_passes_vermin_for_python_3_9(bundle_dir, tmp_path):
    """Glue's Python shell runs 3.9: vermin finds nothing newer in exactly the bundled files."""
    done = subprocess.run(vermin_command(bundle_dir / PACKAGE), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Analyzing {len(python_shell_files())} files" in done.stdout
    # The same check fails on code that needs 3.10 (a match statement, zip(strict=...)).
    newer = tmp_path / "newer"
    shutil.copytree(bundle_dir / PACKAGE, newer)
    (newer / "core" / "keys.py").write_text((newer / "core" / "keys.py").read_text()
                                            + "\n\ndef _pairs(a, b):\n    return list(zip(a, b, strict=True))\n")
    done = subprocess.run(vermin_command(newer), capture_output=True, text=True)
    assert done.returncode != 0 and "strict" in done.stdout


def test_an_import_neither_preinstalled_nor_pinned_fails_the_package(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(REPO / PACKAGE, root / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    stage = root / PACKAGE / "core" / "unzip.py"
    stage.write_text("import yaml\n" + stage.read_text())
    with pytest.raises(PackageError, match="yaml.*PYTHON_SHELL_MODULES"):
        python_shell_files(root)


def test_glue_artifacts_contain_no_mirror_benchmark_or_demo_code(artifacts):
    for wheel in (artifacts.python_shell_bundle, artifacts.runtime_wheel):
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
        assert any(n.startswith("market_etl/stages/") for n in names), wheel.name
        tooling = [n for n in names if any(word in n for word in TOOLING)]
        assert not tooling, f"{wheel.name} ships tooling: {tooling}"
    with zipfile.ZipFile(artifacts.runtime_wheel) as archive:
        assert "market_etl/stages/etl.py" in archive.namelist()
    assert sorted(p.name for p in artifacts.scripts) == ["download.py", "etl.py", "unzip.py"]


def test_terraform_uploads_exactly_what_make_package_builds(artifacts):
    """The S3 objects Terraform uploads are the files `make package` writes to dist/glue/, and only those."""
    variables = {name: body.get("default") for name, body in _flat("variable").items()}
    assert (TF_DIR / variables["artifacts_dir"]).resolve() == REPO / "dist" / "glue"
    assert variables["package_version"] == package.project_version()
    assert "--dist dist" in (REPO / "Makefile").read_text()
    locals_ = {k: v for block in package_locals() for k, v in block.items()}
    version = variables["package_version"]
    resolve = lambda text: (text.replace("${local.artifacts_source}", "").replace("${var.package_version}", version)
                            .replace("${local.python_shell_bundle_file}",
                                     locals_["python_shell_bundle_file"].replace("${var.package_version}", version))
                            .replace("${local.runtime_wheel_file}",
                                     locals_["runtime_wheel_file"].replace("${var.package_version}", version)))
    objects = _resources("aws_s3_object")
    uploaded = set()
    for name, body in objects.items():
        if not body["source"].startswith("${local.artifacts_source}/"):
            continue
        if "for_each" in body:
            stages = locals_["stage_scripts"]
            uploaded |= {resolve(body["source"]).replace("${each.key}", s).lstrip("/") for s in _set(stages)}
        else:
            uploaded.add(resolve(body["source"]).lstrip("/"))
    built = {p.relative_to(artifacts.runtime_wheel.parent).as_posix() for p in artifacts.all()}
    assert uploaded == built


def package_locals():
    return [block for block in _flat_locals() if "artifacts_source" in block or "stage_scripts" in block]


def _flat_locals():
    from market_etl_tests.unit.test_terraform import _tf
    return _tf().get("locals", [])


def _set(expression: str) -> list[str]:
    # `${toset(["download", "unzip", "etl"])}` as python-hcl2 writes it.
    return [part.strip().strip('"') for part in expression.split("[", 1)[1].split("]", 1)[0].split(",")]
