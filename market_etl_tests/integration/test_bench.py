"""`market-etl bench pipeline` on a tiny month: every stage runs for real (one JVM start) and is reported."""
from __future__ import annotations

import re

from market_etl.cli import main

ROWS = 3_100  # 100 trades a day
ENGINE, SPARK = "ETL (stage, DuckDB engine: the local default)", "ETL (stage, Spark engine)"
BARE = ("ETL reference (bare DuckDB, same CSV)", "ETL reference (bare Polars, same CSV)")
STAGES = ("download", "unzip", ENGINE, SPARK, *BARE, "publish (one Iceberg commit)",
          "analytics ohlcv_1m", "analytics daily_trade_stats", "query vwap_1m (2025-07-15)")
RATED = {"download": "MB/s of archive", "unzip": "MB/s of CSV", ENGINE: "rows/s", SPARK: "rows/s",
         BARE[0]: "rows/s", BARE[1]: "rows/s", "analytics ohlcv_1m": "trades/s",
         "analytics daily_trade_stats": "trades/s"}


def _number(text: str) -> float:
    return float(text.split()[0].replace(",", ""))


def stage_table(report: str) -> dict[str, dict[str, str]]:
    """The results file's stage table as {stage: {column: cell}}."""
    lines = report[report.index("| stage |"):].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def test_pipeline_benchmark_reports_every_stage(tmp_path):
    work, output = tmp_path / "work", tmp_path / "results.md"

    assert main(["bench", "pipeline", "--rows", str(ROWS), "--workdir", str(work), "--output", str(output)]) == 0

    report = output.read_text()
    for fact in ("- CPU: ", "- cores: ", "- RAM: ", "- OS: ", "- Python: ", "- Java: ", "- Load average",
                 f"- Input: BTCUSDT 2025-07, {ROWS:,} rows"):
        assert fact in report
    table = stage_table(report)
    assert list(table) == list(STAGES)
    for stage, row in table.items():
        assert _number(row["seconds"]) > 0, stage
        assert _number(row["peak RSS MB"]) > 0, stage
        assert _number(row["CPU s"]) >= 0, stage
        if stage in RATED:
            assert row["rate"].endswith(RATED[stage]) and _number(row["rate"]) > 0, (stage, row["rate"])
    # Rows accounted for at every step (the benchmark also fails by itself when they are not).
    assert table["unzip"]["output"].startswith(f"{ROWS:,} lines")
    for etl in (ENGINE, SPARK, *BARE):
        assert table[etl]["output"] == f"{ROWS:,} rows written", etl
    assert table["analytics daily_trade_stats"]["output"].startswith("31 rows")
    assert re.search(r"scanned 1 of 31 files", table["query vwap_1m (2025-07-15)"]["output"])
    assert "sha256 verified" in table["download"]["output"]
    # The Spark stage's peak counts its JVM (hundreds of MB), not just the Python driver.
    assert _number(table[SPARK]["peak RSS MB"]) > 5 * _number(table["unzip"]["peak RSS MB"])
    assert re.search(r"ETL stage \(DuckDB engine\) vs the fastest bare engine \(.*\), same CSV, same run: "
                     r"[\d,]+ vs [\d,]+ rows/s end to end = [\d.]+", report)
    assert re.search(r"the original design's 632M rows take [\d,.]+ min on this machine", report)
    assert "not judged" in report  # a tiny month is not held to the 30M-row targets
    # The generated month stays cached for the next run; the lake built from it does not.
    assert (work / "pipeline-mirror-100.json").is_file() and not (work / "pipeline-lake").exists()
