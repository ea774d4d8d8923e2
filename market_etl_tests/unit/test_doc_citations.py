"""Every document or repository path cited in code, SQL, terraform, Makefile or docs exists.

Comments cite notes (`docs/reliability.md case 24`) and files (`market_etl/lake/s3.py`); a citation of a
moved or never-committed file sends the reader nowhere. Cited are: any `*.md` name (resolved against the
citing file's folder, the repository root and docs/), and any path under one of the repository's own
top-level folders. Paths with placeholders (`<stage>`, `{symbol}`, `*`) are patterns, not citations.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED_SUFFIXES = {".py", ".tf", ".sql", ".md", ".toml", ".yaml", ".cfg", ".sh"}
SCANNED_NAMES = {"Makefile"}
# Folders that are not the project's text: environments, generated data, build output.
SKIPPED_DIRS = {"data", "build", "dist", "node_modules", "__pycache__", "work", "fixtures"}

_MD = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
_PATH_CHARS = r"[\w./-]"


def _top_level_path_pattern(root: Path) -> re.Pattern:
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and p.name not in SKIPPED_DIRS and not p.name.endswith(".egg-info"))
    if not folders:
        return re.compile(r"(?!x)x")
    names = "|".join(re.escape(f) for f in folders)
    # `market_etl/lake/s3.py`, `terraform/s3.tf`, `sql/athena_analytics.sql`: a top-level folder, then a file
    # with an extension. Not preceded by a path character (so `/tmp/x/sql/a.sql` or `s3://b/sql/a.sql` is not one).
    return re.compile(rf"(?<![\w./:-])((?:{names})/{_PATH_CHARS}*\.[A-Za-z]{{1,5}})(?![\w*<{{])")


def scanned_files(root: Path) -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.splitlines()
        candidates = [root / name for name in listed]
    except (OSError, subprocess.CalledProcessError):
        candidates = [p for p in root.rglob("*") if p.is_file()]
    files = []
    for path in candidates:
        parts = path.relative_to(root).parts
        if any(part.startswith(".") or part in SKIPPED_DIRS or part.endswith(".egg-info") for part in parts[:-1]):
            continue
        if path.is_file() and (path.suffix in SCANNED_SUFFIXES or path.name in SCANNED_NAMES):
            files.append(path)
    return sorted(files)


def _resolves(root: Path, citing: Path, cited: str, basenames: set[str]) -> bool:
    cited = cited.rstrip(".")
    if "/" not in cited and cited in basenames:
        return True  # a bare name (`checkov-skips.md`) of a file somewhere in the repository
    return (root / cited).exists() or (citing.parent / cited).exists()


def _is_pattern(text: str, end: int) -> bool:
    return end < len(text) and text[end] in "*<{"


def broken_citations(root: Path) -> list[str]:
    """`file:line: cited` for every citation in the repository's text that names no existing file."""
    paths = _top_level_path_pattern(root)
    broken = []
    files = scanned_files(root)
    basenames = {p.name for p in files}
    for path in files:
        if path == Path(__file__).resolve():
            continue  # this file's examples of broken citations are broken on purpose
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            found = [(m.group(1), m.end(1)) for m in _MD.finditer(line)]
            found += [(m.group(1), m.end(1)) for m in paths.finditer(line)]
            for cited, end in found:
                if any(ch in cited for ch in "<>{}*") or _is_pattern(line, end) or "://" in line[:end][-len(cited) - 3:]:
                    continue
                if not _resolves(root, path, cited, basenames):
                    broken.append(f"{path.relative_to(root)}:{number}: {cited}")
    return sorted(set(broken))


def test_every_cited_document_and_path_exists():
    broken = broken_citations(REPO)
    assert not broken, ("these comments cite files that are not in the repository (fix the path, or add the "
                        "document under docs/):\n" + "\n".join(broken))


def test_the_docs_the_code_cites_are_there():
    for name in ("reliability.md", "performance.md", "binance-files.md", "design.md"):
        assert (REPO / "docs" / name).stat().st_size > 1000, name


@pytest.mark.parametrize("citing_name, text", [
    ("module.py", '"""Fault handling (docs/no_such_note.md case 3)."""\n'),
    ("module.py", "# see RELIABILITY.md case 24\n"),
    ("main.tf", "# Lake layout (docs/design_gone.md)\n"),
    ("query.sql", "-- unchanged (docs/missing.md case 24)\n"),
    ("Makefile", "# written to benchmarks/nothing_here.md\n"),
    ("module.py", "# property-tested in market_etl_tests/test_multipart.py\n"),
])
def test_a_broken_citation_fails(tmp_path, citing_name, text):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "reliability.md").write_text("# Faults\n")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "market_etl_tests").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / citing_name).write_text(text)
    broken = broken_citations(tmp_path)
    assert len(broken) == 1 and broken[0].startswith(f"src/{citing_name}:1: "), broken


def test_existing_citations_and_patterns_pass(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "reliability.md").write_text("See [design](design.md).\n")
    (tmp_path / "docs" / "design.md").write_text("# Design\n")
    (tmp_path / "market_etl").mkdir()
    (tmp_path / "market_etl" / "s3.py").write_text(
        "# docs/reliability.md case 3; reliability.md; market_etl/s3.py\n"
        "# market_etl/stages/<stage>.py and market_etl/bench_*.py are patterns\n"
        "URL = 's3://bucket/market_etl/x.py'\n")
    assert broken_citations(tmp_path) == []
