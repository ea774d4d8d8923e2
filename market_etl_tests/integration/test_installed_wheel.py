"""The runtime wheel, installed as a user would: the query command, its SQL and `init-home` work outside a checkout.

The wheel is what ships to Glue, so it must carry sql/ and dagster.yaml (read through importlib.resources)
and nothing of the tooling (mirror, benchmarks, demo), which lives in devtools/.

The wheel is built from a copy of the checkout (a stale build/ in the checkout could leak old files
into it) and installed with --no-deps into a venv of its own; the venv reaches the pinned dependencies
through a path file naming this environment's site-packages (a plain path: the editable installs'
own path files there are not run, so neither the checkout nor devtools is importable).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # ~35 s: a wheel build and a venv

REPO = Path(__file__).resolve().parents[2]
# Not part of the runtime package's source; skipped when the checkout is copied for the build.
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv*", "data", "build", "dist", "*.egg-info", "__pycache__",
                                     ".dagster_home", "work", ".pytest_cache", ".hypothesis")
TOOLING = ("market_etl_devtools", "mirror", "bench", "demo")


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source") / "market-etl"
    shutil.copytree(REPO, source, symlinks=True, ignore=COPY_IGNORE)
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
         cwd=out)
    (built,) = out.glob("market_etl-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its bin/ directory."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
          str(wheel)], cwd=venv.parent)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=venv.parent).stdout.strip())
    (site / "zz_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def test_the_wheel_holds_sql_and_dagster_yaml_and_no_tooling(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for sql in (REPO / "sql").glob("*.sql"):
        assert f"market_etl/sql/{sql.name}" in names
    assert "market_etl/dagster.yaml" in names
    tooling = [n for n in names if any(part in n for part in TOOLING)]
    assert not tooling, f"tooling in the runtime wheel: {tooling}"
    assert all(n.startswith(("market_etl/", "market_etl-")) for n in names), names


def test_installed_commands_work_outside_the_checkout(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DAGSTER_HOME")}
    env["DAGSTER_HOME"] = str(tmp_path / "home")
    env["MARKET_ETL_LAKE"] = str(tmp_path / "lake")

    where = _run([str(installed / "python"), "-c",
                  "import importlib.util, market_etl; print(market_etl.__file__); "
                  "print(importlib.util.find_spec('market_etl_devtools'))"], cwd=tmp_path, env=env).stdout.split()
    assert where[0].startswith(str(installed.parent)), f"market_etl imported from {where[0]}, not the installed wheel"
    assert where[1] == "None", "the tooling package is importable next to the installed wheel"

    listed = _run([str(installed / "market-etl"), "query", "--list"], cwd=tmp_path, env=env).stdout
    for name in ("trades_by_symbol", "vwap_1m", "ohlcv_1m"):
        assert name in listed

    _run([str(installed / "market-etl"), "init-home"], cwd=tmp_path, env=env)
    assert (tmp_path / "home" / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()

    # The tooling's subcommands say where to get them.
    missing = subprocess.run([str(installed / "market-etl"), "mirror"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "pip install -e devtools" in missing.stderr, missing
