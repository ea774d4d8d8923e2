"""`make package`: every artifact the Glue jobs run, built into `dist/glue/` (Terraform uploads exactly these).

- `jobs/<stage>.py`: the stage entry points, copied from `market_etl/stages/` (each job's script).
- `market_etl_python_shell-<version>-py3-none-any.whl`: for the Python shell jobs (download, unzip),
  which run Python 3.9. It holds only the `market_etl` modules those two stages import, found by
  following their imports, declares `Requires-Python >=3.9` and no dependencies: whether Glue puts it
  on `sys.path` or pip-installs it, nothing of the Dagster/Spark stack comes with it. Its third-party
  imports are either preinstalled on Glue's Python shell 3.9 (`PYTHON_SHELL_PREINSTALLED`) or pinned in
  the jobs' `--additional-python-modules` (`PYTHON_SHELL_MODULES`); each pinned requirement must have a
  CPython 3.9 manylinux x86_64 wheel (or a pure one), checked here with `pip download --only-binary`.
- `market_etl-<version>-py3-none-any.whl`: the runtime package for the Glue 5.0 Spark job (Python 3.11),
  built from the repository root without its dependencies (Glue provides Spark and boto3); the tooling
  (`market_etl_devtools`) is a separate package and is never in it.

The 3.9 claim is checked statically over exactly the bundled files by vermin (`vermin_command`), in the
test suite (market_etl_tests/unit/test_package.py).
"""
from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "market_etl"
STAGES = ("download", "unzip", "etl")
PYTHON_SHELL_STAGES = ("download", "unzip")
PYTHON_SHELL_VERSION = "3.9"
PYTHON_SHELL_BUNDLE = "market_etl_python_shell"

# Libraries preinstalled in Glue's Python shell 3.9 runtime, as AWS documents them in "Supported libraries
# for Python shell jobs" (https://docs.aws.amazon.com/glue/latest/dg/add-job-python.html#python-shell-supported-library).
# Only the AWS SDK is relied on; everything else the stages import is pinned below.
PYTHON_SHELL_PREINSTALLED = ("boto3", "botocore")

# import name -> the requirement the Python shell jobs install with `--additional-python-modules`
# (terraform/glue_jobs.tf passes `python_shell_additional_modules()`; a test keeps the two equal).
# dagster-pipes 1.10.21 is the last release for Python 3.9 and speaks Pipes protocol "0.1" like the
# orchestrator's 1.13. requests is pinned to a release that still supports 3.9, with urllib3 1.26: the
# preinstalled botocore requires urllib3 < 1.27 on Python 3.9, and requests would otherwise pull 2.x over it.
PYTHON_SHELL_MODULES: dict[str, tuple[str, ...]] = {
    "dagster_pipes": ("dagster-pipes==1.10.21",),
    "requests": ("requests==2.32.5", "urllib3==1.26.20"),
    "isal": ("isal==1.9.1",),
}


class PackageError(RuntimeError):
    """The artifacts cannot be built as declared: the message says what to change."""


def project_version() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def python_shell_additional_modules() -> str:
    """The `--additional-python-modules` value of the Python shell jobs."""
    return ",".join(req for reqs in PYTHON_SHELL_MODULES.values() for req in reqs)


# --- what the Python shell stages import -------------------------------------------------------------


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from market_etl.core import keys` imports the module market_etl.core.keys.
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def _module_files(name: str, root: Path) -> list[Path]:
    """The files importing `name` executes: every package `__init__.py` on the way, and the module."""
    parts = name.split(".")
    files = [root.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
    files.append(root.joinpath(*parts).with_suffix(".py"))
    return [f for f in files if f.exists()]


def import_closure(scripts: list[Path], root: Path = REPO_ROOT) -> tuple[set[Path], set[str]]:
    """The `market_etl` files the scripts import, transitively, and the top-level names of every other import."""
    seen: set[Path] = set()
    external: set[str] = set()
    todo = list(scripts)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top == PACKAGE:
                todo.extend(_module_files(name, root))
            else:
                external.add(top)
    return seen, external - set(sys.stdlib_module_names) - {"__future__"}


def python_shell_files(root: Path = REPO_ROOT) -> list[Path]:
    """Every `market_etl` file the Python shell stages need, stage scripts included (repo-relative order)."""
    scripts = [root / PACKAGE / "stages" / f"{stage}.py" for stage in PYTHON_SHELL_STAGES]
    files, external = import_closure(scripts, root)
    unknown = sorted(external - set(PYTHON_SHELL_PREINSTALLED) - set(PYTHON_SHELL_MODULES))
    if unknown:
        raise PackageError(
            f"the Python shell stages import {', '.join(unknown)}, which Glue's Python shell 3.9 neither "
            f"preinstalls nor gets from --additional-python-modules: add it to PYTHON_SHELL_MODULES in "
            f"{Path(__file__).relative_to(REPO_ROOT)} (pinned, with a 3.9 wheel) or stop importing it")
    return sorted(files)


# --- building ----------------------------------------------------------------------------------------


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(path: Path, name: str, version: str, files: dict[str, bytes], requires_python: str,
                summary: str) -> Path:
    """A pure-Python wheel of `files` (archive name -> bytes), no dependencies; reproducible (fixed dates)."""
    dist_info = f"{name}-{version}.dist-info"
    members = dict(sorted(files.items()))
    members[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n"
        f"Requires-Python: {requires_python}\n").encode()
    members[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: market_etl_devtools.package\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n").encode()
    record = [_record_line(n, d) for n, d in members.items()] + [f"{dist_info}/RECORD,,"]
    members[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for member, data in members.items():
            info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            wheel.writestr(info, data)
    return path


def build_python_shell_bundle(out_dir: Path, root: Path = REPO_ROOT) -> Path:
    version = project_version()
    files = {str(f.relative_to(root)): f.read_bytes() for f in python_shell_files(root)}
    return write_wheel(out_dir / f"{PYTHON_SHELL_BUNDLE}-{version}-py3-none-any.whl", PYTHON_SHELL_BUNDLE,
                       version, files, requires_python=f">={PYTHON_SHELL_VERSION}",
                       summary="market-etl's download and unzip stages for Glue Python shell 3.9")


def build_runtime_wheel(out_dir: Path) -> Path:
    """The runtime package's wheel (no dependencies) for the Glue 5.0 Spark job."""
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--wheel-dir", scratch, str(REPO_ROOT)],
                       check=True)
        [built] = Path(scratch).glob("market_etl-*.whl")
        out_dir.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(built, out_dir / built.name))


def copy_stage_scripts(out_dir: Path, root: Path = REPO_ROOT) -> list[Path]:
    jobs = out_dir / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(root / PACKAGE / "stages" / f"{stage}.py", jobs / f"{stage}.py")) for stage in STAGES]


def check_python_shell_wheels(download_dir: Path) -> None:
    """Every pinned requirement resolves to wheels for CPython 3.9 on manylinux x86_64 (Glue's Python shell), or fail."""
    requirements = [req for reqs in PYTHON_SHELL_MODULES.values() for req in reqs]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "--python-version", PYTHON_SHELL_VERSION, "--implementation", "cp",
               "--abi", "cp39", "--platform", "manylinux2014_x86_64", "--dest", str(download_dir), *requirements]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise PackageError(
            f"no CPython {PYTHON_SHELL_VERSION} manylinux x86_64 wheels for {' '.join(requirements)} "
            f"(what the Python shell jobs install with --additional-python-modules): pin versions that "
            f"publish them in PYTHON_SHELL_MODULES.\n{done.stderr.strip()}")


@dataclass(frozen=True)
class Artifacts:
    scripts: list[Path]
    python_shell_bundle: Path
    runtime_wheel: Path

    def all(self) -> list[Path]:
        return [*self.scripts, self.python_shell_bundle, self.runtime_wheel]


def build_all(dist: Path, check_wheels: bool = True) -> Artifacts:
    out = dist / "glue"
    if out.exists():
        shutil.rmtree(out)  # exactly this build's artifacts, nothing left from an older version
    if check_wheels:
        with tempfile.TemporaryDirectory() as scratch:
            check_python_shell_wheels(Path(scratch))
    return Artifacts(scripts=copy_stage_scripts(out), python_shell_bundle=build_python_shell_bundle(out),
                     runtime_wheel=build_runtime_wheel(out))


def vermin_command(directory: Path) -> list[str]:
    """The static check that the code in `directory` runs on Python 3.9 (what the Python shell jobs run)."""
    return [str(Path(sys.executable).with_name("vermin")), "--no-tips", "--violations", f"-t={PYTHON_SHELL_VERSION}-",
            str(directory)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist")
    args = parser.parse_args(argv)
    try:
        artifacts = build_all(args.dist)
        with tempfile.TemporaryDirectory() as scratch:
            with zipfile.ZipFile(artifacts.python_shell_bundle) as bundle:
                bundle.extractall(scratch)
            subprocess.run(vermin_command(Path(scratch) / PACKAGE), check=True)
    except (PackageError, subprocess.CalledProcessError) as err:
        print(f"make package: {err}", file=sys.stderr)
        return 1
    print(f"Python shell wheels checked for CPython {PYTHON_SHELL_VERSION} manylinux x86_64: "
          f"{python_shell_additional_modules()}")
    for path in artifacts.all():
        print(f"{path.stat().st_size:>10,}  {path.relative_to(args.dist.parent) if args.dist.is_absolute() else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
