"""What a person reads: progress lines (throttled by a clock), markdown check summaries, per-day tables."""
from market_etl.core.checks import contiguity_outcome, reconciliation_outcome, rule_check_outcome
from market_etl.core.keys import TradePartition
from market_etl.core.metadata import (
    ColumnSchema,
    Markdown,
    days_table,
    missing_days,
    pipes_metadata,
    quarantine_markdown,
    share,
)
from market_etl.core.progress import ProgressReporter
from market_etl.core.trades import analyse_segments


class FakeClock:
    """Seconds that advance only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_emits_once_per_interval_with_rate_and_eta():
    clock, lines = FakeClock(), []
    reporter = ProgressReporter("downloading BTCUSDT/2025-07", 100_000_000, lines.append, every_seconds=5, clock=clock)
    for _ in range(4):  # 4 MB within the first second: nothing yet
        reporter.advance(1_000_000)
    clock.now += 4.9
    reporter.advance(1_000_000)
    assert lines == []
    clock.now += 0.1  # 5 s, 6 MB: 1.2 MB/s, 94 MB left -> 78 s
    reporter.advance(1_000_000)
    assert lines == ["downloading BTCUSDT/2025-07: 6.0 of 100.0 MB (6%), 1.2 MB/s, ETA 1m18s"]
    clock.now += 1
    reporter.advance(1_000_000)
    assert len(lines) == 1  # throttled: the next line comes 5 s after the last one
    clock.now += 4
    reporter.advance(1_000_000)
    assert len(lines) == 2 and lines[1].startswith("downloading BTCUSDT/2025-07: 8.0 of 100.0 MB (8%)")


def test_progress_without_a_declared_size_reports_bytes_and_rate_only():
    clock, lines = FakeClock(), []
    reporter = ProgressReporter("inflating X", None, lines.append, every_seconds=1, clock=clock)
    clock.now += 2
    reporter.advance(3_000_000)
    assert lines == ["inflating X: 3.0 MB, 1.5 MB/s"]


def test_shares_read_as_people_read_them():
    assert share(0, 6000) == "0%" and share(3, 0) == "0%"
    assert share(3, 6000) == "0.05%" and share(1, 6000) == "0.017%"
    assert share(600, 6000) == "10.0%"


def test_rule_check_summary_is_a_markdown_table_with_sample_lines():
    lines = [f"{i},-1,1,1,1,True,True" for i in range(7)]
    outcome = rule_check_outcome("positive_prices", 6000, {"price_present": 1, "price_positive": 6}, 0.0,
                                 list(range(7)), lines)
    summary = outcome.metadata["summary"]
    assert isinstance(summary, Markdown) and not outcome.passed
    assert "7 of 6,000 source rows broke these rules (0.12%); tolerance 0 rows." in summary
    assert "| `price_missing` | 1 | 0.017% |" in summary and "| `price_not_positive` | 6 | 0.1% |" in summary
    assert "First 5 quarantined source line(s)" in summary
    assert lines[4] in summary and lines[5] not in summary
    # The numbers behind it stay as numbers.
    assert outcome.metadata["rows_rejected"] == 7 and outcome.metadata["rows_in"] == 6000


def test_reconciliation_and_contiguity_summaries():
    summary = reconciliation_outcome(100, 90, 7, 3).metadata["summary"]
    assert "| rows written | 90 |" in summary and "| unaccounted | 0 |" in summary
    layout = analyse_segments([(5, 1, 5), (3, 9, 11)])
    gap = contiguity_outcome(layout).metadata["summary"]
    assert "1 gap(s), 3 id(s) missing between 1 and 11" in gap and "| 6..8 | 3 |" in gap


def test_days_table_lists_every_day_of_the_month_and_a_missing_one_reads_zero():
    february = TradePartition("BTCUSDT", "2024-02")
    table = days_table(february, {d: 10 for d in range(1, 30) if d != 13})
    assert len(table.rows) == 29 and table.rows[12] == ("2024-02-13", 0)
    assert missing_days(february, {d: 10 for d in range(1, 30) if d != 13}) == ["2024-02-13"]
    records = pipes_metadata({"rows_per_day": table})["rows_per_day"]
    assert records["type"] == "table" and records["raw_value"]["records"][0] == {"day": "2024-02-01", "rows": 10}


def test_quarantine_summary_lists_reasons_largest_first():
    text = quarantine_markdown({"price_missing": 1, "trade_time_outside_month": 4, "flag_invalid": 0}, 1000)
    assert text.index("trade_time_outside_month") < text.index("price_missing") and "flag_invalid" not in text
    assert text.startswith("5 of 1,000 source rows quarantined (0.5%)")
    assert quarantine_markdown({}, 1000) == "No row quarantined out of 1,000."


def test_pipes_metadata_types():
    out = pipes_metadata({"n": 3, "by": {"a": 1}, "md": Markdown("**x**"),
                          "dagster/column_schema": ColumnSchema((("trade_id", "bigint"),))})
    assert out["n"] == 3 and out["by"] == {"raw_value": {"a": 1}, "type": "json"}
    assert out["md"] == {"type": "md", "raw_value": "**x**"}
    assert out["dagster/column_schema"] == {"type": "table_schema",
                                            "raw_value": {"columns": [{"name": "trade_id", "type": "bigint"}]}}


def test_table_assets_declare_columns_table_name_and_code_version():
    import dagster as dg

    from market_etl.core.tables import ANALYTICS_TABLES, TRADES_COLUMNS
    from market_etl.core.versions import TRANSFORM_VERSION
    from market_etl.definitions import build_definitions
    from market_etl.settings import Settings

    defs = build_definitions(Settings(lake="s3://bucket/lake"))
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    processed = specs[dg.AssetKey(["processed", "trades"])]
    assert processed.code_version == TRANSFORM_VERSION
    assert processed.metadata["dagster/uri"] == "s3://bucket/lake/processed/trades"
    tables = {("processed", "trades"): ("market_data.trades_binance", TRADES_COLUMNS),
              ("market_data", "trades_binance"): ("market_data.trades_binance", TRADES_COLUMNS),
              **{("analytics", name): (f"market_data.{name}", table.columns)
                 for name, table in ANALYTICS_TABLES.items()}}
    for path, (table_name, columns) in tables.items():
        metadata = specs[dg.AssetKey(list(path))].metadata
        assert metadata["dagster/table_name"] == table_name, path
        declared = [(c.name, c.type) for c in metadata["dagster/column_schema"].columns]
        assert declared[:len(columns)] == list(columns), path
