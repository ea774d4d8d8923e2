"""`market-etl bench query` on a tiny lake: both commands and both API loads are timed, and its section
replaces its previous one in the results file without touching the rest."""
from __future__ import annotations

from market_etl.cli import main


def test_query_benchmark_writes_its_section(tmp_path):
    output = tmp_path / "results.md"
    output.write_text("# Pipeline results\n\n| stage | seconds |\n|---|---|\n| unzip | 1.0 |\n")
    args = ["bench", "query", "--trades-per-day", "5", "--runs", "1", "--workdir", str(tmp_path / "work"),
            "--output", str(output)]
    assert main(args) == 0
    assert main(args) == 0  # a second run replaces the section
    report = output.read_text()
    assert report.startswith("# Pipeline results\n") and "| unzip | 1.0 |" in report
    assert report.count("## Query command and read API") == 1
    lines = [line for line in report.splitlines() if line.startswith("| `market-etl query`")]
    assert len(lines) == 2 and all("<= 0.5 s" in line for line in lines)
    assert "| one symbol-day (BTCUSDT 2025-07-15) | 5 |" in report
    assert "| one symbol-month (BTCUSDT 2025-07) | 155 |" in report
    assert not (tmp_path / "work" / "query-lake").exists()
