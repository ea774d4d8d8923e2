"""Named queries: every sample query runs on DuckDB over a generated lake and equals Python's own
computation from the source rows; parameters are validated and bound, never pasted (case 25);
partition filters prune files; the CLI prints tables, CSV and JSON."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from typing import Callable, Iterable

import pytest
from hypothesis import given, settings, strategies as st

from market_etl.cli import main as cli_main
from market_etl.core.keys import SYMBOL_PATTERN, InvalidPartitionKey, TradePartition
from market_etl.core.sql import (
    QueryError,
    bind,
    get_query,
    load_queries,
    parameters_for,
    parse_named_queries,
)
from market_etl.query_cli import show_demo_queries
from market_etl.resources.sql import DuckDBSqlEngine
from market_etl_tests.lake_fixtures import (
    SourceTrade,
    assert_rows_equal,
    build_processed_lake,
    generate_trades,
    write_bulk_partition,
    publish_partition,
    write_processed_partition,
)

JULY_BTC, JULY_ETH, AUGUST_BTC = (TradePartition("BTCUSDT", "2025-07"), TradePartition("ETHUSDT", "2025-07"),
                                  TradePartition("BTCUSDT", "2025-08"))
FILES_PER_DAY = 2
SYMBOL, DATE = "BTCUSDT", "2025-07-02"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Three registered partitions (two symbols, two months), two files per day; returns (root, source rows)."""
    root = tmp_path_factory.mktemp("sql-lake")
    source = build_processed_lake(root, [JULY_BTC, JULY_ETH], range(1, 4), 300, seed=3, files_per_day=FILES_PER_DAY)
    source[AUGUST_BTC] = generate_trades(AUGUST_BTC, range(1, 3), 300, seed=3)
    write_processed_partition(root, AUGUST_BTC, source[AUGUST_BTC], files_per_day=FILES_PER_DAY)
    for partition in source:
        publish_partition(root, partition)
    return root, [(p.symbol, t) for p, trades in source.items() for t in trades]


# ---------------------------------------------------------------- Python's own answers, from the source rows


def _rows(lake_rows, symbol=None, year=None, month=None, day=None) -> list[tuple[str, SourceTrade]]:
    return [(s, t) for s, t in lake_rows
            if (symbol is None or s == symbol) and (year is None or t.trade_time.year == year)
            and (month is None or t.trade_time.month == month) and (day is None or t.trade_time.day == day)]


def _group(rows, key: Callable) -> dict:
    groups = defaultdict(list)
    for s, t in rows:
        groups[key(s, t)].append(t)
    return dict(sorted(groups.items()))


def _vwap(trades: Iterable[SourceTrade]) -> float:
    trades = list(trades)
    return float(sum(t.price * t.quantity for t in trades)) / float(sum(t.quantity for t in trades))


def _naive(t: SourceTrade) -> dt.datetime:
    return t.trade_time.replace(tzinfo=None)


def _volume(trades) -> Decimal:
    return sum((t.quantity for t in trades), Decimal(0))


def _buy(trades) -> list[SourceTrade]:
    return [t for t in trades if not t.is_buyer_maker]


def _sell(trades) -> list[SourceTrade]:
    return [t for t in trades if t.is_buyer_maker]


def expect_trades_by_symbol(rows, p):
    return [(s, len(ts), _volume(ts), sum(t.quote_qty for t in ts), _vwap(ts), min(map(_naive, ts)),
             max(map(_naive, ts))) for s, ts in _group(rows, lambda s, t: s).items()]


def expect_vwap_1m(rows, p):
    day = _rows(rows, p["symbol"], p["year"], p["month"], p["day"])
    return [(minute, _vwap(ts), _volume(ts), len(ts))
            for minute, ts in _group(day, lambda s, t: _naive(t).replace(second=0, microsecond=0)).items()]


def expect_order_flow_by_symbol(rows, p):
    return [(s, _volume(_buy(ts)), _volume(_sell(ts)), len(_buy(ts)), len(_sell(ts)),
             float(_volume(_buy(ts)) - _volume(_sell(ts))) / float(_volume(ts)))
            for s, ts in _group(rows, lambda s, t: s).items()]


def expect_original_order_flow(rows, p):
    month = _rows(rows, year=p["year"], month=p["month"])
    return [(symbol, side, len(ts), sum(t.quote_qty for t in ts))
            for (symbol, side), ts in _group(month, lambda s, t: (s, "taker_sell" if t.is_buyer_maker
                                                                   else "taker_buy")).items()]


def expect_daily_ohlcv(rows, p):
    month = _rows(rows, p["symbol"], p["year"], p["month"])
    out = []
    for date, ts in _group(month, lambda s, t: t.trade_time.date()).items():
        by_id = sorted(ts, key=lambda t: t.trade_id)
        out.append((date, by_id[0].price, max(t.price for t in ts), min(t.price for t in ts), by_id[-1].price,
                    _volume(ts), sum(t.quote_qty for t in ts), len(ts)))
    return out


def expect_largest_trades(rows, p):
    month = [t for _, t in _rows(rows, p["symbol"], p["year"], p["month"])]
    top = sorted(month, key=lambda t: (-t.quote_qty, t.trade_id))[:20]
    return [(t.trade_id, _naive(t), t.price, t.quantity, t.quote_qty, "sell" if t.is_buyer_maker else "buy")
            for t in top]


BUCKETS = [(Decimal(100), "< 100"), (Decimal(1000), "100 - 1k"), (Decimal(10000), "1k - 10k"),
           (Decimal(100000), "10k - 100k"), (None, ">= 100k")]


def expect_trade_size_distribution(rows, p):
    month = _rows(rows, p["symbol"], p["year"], p["month"])
    bucket_of = lambda s, t: next(i for i, (limit, _) in enumerate(BUCKETS) if limit is None or t.quote_qty < limit)
    groups = _group(month, bucket_of)
    total_quote = float(sum(t.quote_qty for _, t in month))
    return [(b, BUCKETS[b][1], len(ts), _volume(ts), sum(t.quote_qty for t in ts), len(ts) / len(month),
             float(sum(t.quote_qty for t in ts)) / total_quote) for b, ts in groups.items()]


def expect_hourly_volume_profile(rows, p):
    month = _rows(rows, p["symbol"], p["year"], p["month"])
    total = float(_volume([t for _, t in month]))
    return [(hour, len(ts), _volume(ts), float(_volume(ts)) / total, _vwap(ts))
            for hour, ts in _group(month, lambda s, t: t.trade_time.hour).items()]


EXPECTED = {name[len("expect_"):]: f for name, f in globals().items() if name.startswith("expect_")}


SAMPLE_QUERIES = [q.name for q in load_queries().values() if q.source == "athena_sample_queries.sql"]


def test_every_sample_query_has_an_independent_python_answer():
    assert set(SAMPLE_QUERIES) == set(EXPECTED)
    assert {"trades_by_symbol", "vwap_1m", "original_order_flow", "order_flow_by_symbol"} <= set(SAMPLE_QUERIES)


@pytest.mark.parametrize("name", SAMPLE_QUERIES)
def test_sample_query_on_duckdb_equals_python(lake, name):
    root, rows = lake
    query = get_query(name)
    values = {k: v for k, v in parameters_for(symbol=SYMBOL, date=DATE).items() if k in query.parameters}
    result = DuckDBSqlEngine(lake_url=str(root)).query(bind(query, values))
    expected = EXPECTED[name](rows, values)
    assert expected, "the generated lake must give every query rows to compare"
    assert_rows_equal(result.rows, expected)


@pytest.mark.parametrize("name", SAMPLE_QUERIES)
def test_sample_query_binds_for_athena_as_trino_sql(name):
    """The Athena side of every sample query (the originals included): Trino SQL with one `?` per parameter."""
    import sqlglot

    query = get_query(name)
    values = {k: v for k, v in parameters_for(symbol=SYMBOL, date=DATE).items() if k in query.parameters}
    sql, parameters = bind(query, values).for_athena()
    assert sql.count("?") == len(parameters) == len(query.parameters)
    assert sqlglot.parse_one(sql.replace("?", "NULL"), read="athena").find(sqlglot.exp.Select)


def test_partition_filters_read_only_that_days_files(lake):
    root, _ = lake
    engine = DuckDBSqlEngine(lake_url=str(root))
    pruned = engine.query(bind(get_query("vwap_1m"), parameters_for(symbol=SYMBOL, date=DATE)))
    assert pruned.files_scanned == FILES_PER_DAY  # 2025-07-02/BTCUSDT only
    assert pruned.files_total == (3 + 3 + 2) * FILES_PER_DAY  # every registered file was a candidate

    # The same day selected by time alone: no partition key in the filter, every BTCUSDT file is opened.
    by_time = engine.query(bind(
        "SELECT count(*) FROM market_data.trades_binance WHERE symbol = :symbol "
        "AND trade_time >= TIMESTAMP '2025-07-02 00:00:00' AND trade_time < TIMESTAMP '2025-07-03 00:00:00'",
        {"symbol": SYMBOL}))
    assert by_time.files_scanned == (3 + 2) * FILES_PER_DAY
    assert by_time.rows[0][0] == sum(r[3] for r in pruned.rows)
    assert 0 < pruned.bytes_scanned < by_time.bytes_scanned


# ---------------------------------------------------------------- parameters: validated, then bound (case 25)

HOSTILE_SYMBOLS = ["BTCUSDT' OR '1'='1", "../etc", "btcusdt", "BTC USDT", "BTCUSDT;DROP", "", "B", "X" * 21]


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS)
def test_hostile_symbols_are_rejected_before_any_sql(symbol):
    with pytest.raises(InvalidPartitionKey):
        bind(get_query("vwap_1m"), {"symbol": symbol, "year": 2025, "month": 7, "day": 2})


@pytest.mark.parametrize("kwargs", [
    {"month": "2025-13"}, {"month": "2025-7"}, {"month": "1999-01"}, {"month": "2999-01"},
    {"month": "2025-07' OR 1=1 --"}, {"date": "2025-02-30"}, {"date": "2025-07-2"}, {"date": "2025-07-02; DROP"},
])
def test_bad_months_and_dates_are_rejected(kwargs):
    with pytest.raises(InvalidPartitionKey):
        parameters_for(symbol=SYMBOL, **kwargs)


@pytest.mark.parametrize("values", [{"year": "2025"}, {"month": 7.0}, {"day": True}, {"day": 0}, {"month": 13}])
def test_numbers_must_be_integers_in_range(values):
    with pytest.raises(InvalidPartitionKey):
        bind("SELECT 1 WHERE " + " AND ".join(f"{k} = :{k}" for k in values), values)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_a_symbol_reaches_sql_only_validated_and_as_a_parameter(symbol):
    """Property: any text either fails validation, or is a well-formed symbol that travels as a bound
    parameter: the SQL text both engines receive is the same whatever the value."""
    query = get_query("vwap_1m")
    try:
        bound = bind(query, {"symbol": symbol, "year": 2025, "month": 7, "day": 2})
    except InvalidPartitionKey:
        assert not SYMBOL_PATTERN.fullmatch(symbol)
        return
    assert SYMBOL_PATTERN.fullmatch(symbol)
    reference = bind(query, {"symbol": "BTCUSDT", "year": 2025, "month": 7, "day": 2})
    assert bound.for_duckdb()[0] == reference.for_duckdb()[0]
    assert bound.for_athena()[0] == reference.for_athena()[0]
    assert bound.for_athena()[1] == ["2025", "7", "2", f"'{symbol}'"]
    assert bound.for_duckdb()[1]["symbol"] == symbol


def test_placeholders_inside_strings_and_comments_are_text():
    bound = bind("SELECT ':day' AS label -- not :month\nFROM t WHERE symbol = :symbol", {"symbol": "ETHUSDT"})
    sql, parameters = bound.for_athena()
    assert sql == "SELECT ':day' AS label -- not :month\nFROM t WHERE symbol = ?" and parameters == ["'ETHUSDT'"]
    assert "$symbol" in bound.for_duckdb()[0] and "':day'" in bound.for_duckdb()[0]


def test_missing_and_unexpected_parameters_are_named():
    with pytest.raises(QueryError, match=r"needs day, symbol \(give --date, --symbol\)"):
        bind(get_query("vwap_1m"), {"year": 2025, "month": 7})
    with pytest.raises(QueryError, match="takes no parameter symbol"):
        bind(get_query("trades_by_symbol"), {"symbol": "BTCUSDT"})


def test_query_file_format_errors_are_reported():
    with pytest.raises(QueryError, match="defined twice"):
        parse_named_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;", "x.sql")
    with pytest.raises(QueryError, match="exactly one statement"):
        parse_named_queries("-- name: a\nSELECT 1; SELECT 2;", "x.sql")
    with pytest.raises(QueryError, match="no query named 'nope'"):
        get_query("nope")


def test_ddl_matches_the_table_declaration():
    """The hand-run Athena DDL declares the Iceberg table the code creates from core.tables."""
    import sqlglot

    from market_etl.core.sql import SQL_DIR
    from market_etl.core.tables import TRADES

    ddl = parse_named_queries((SQL_DIR / "athena_create_trades_table.sql").read_text(), "ddl")["create_trades_table"]
    create = sqlglot.parse_one(ddl.sql, read="athena")
    norm = lambda cols: [(c.name, c.args["kind"].sql("hive").lower().replace(" ", "")) for c in cols]
    assert create.this.this.sql() == "market_data.trades_binance"
    assert norm(create.this.expressions) == list(TRADES.columns)
    partitioned = ddl.sql.split("PARTITIONED BY (", 1)[1].split(")", 1)[0]
    assert [p.strip() for p in partitioned.split(",")] == list(TRADES.partition_fields)
    assert "'table_type' = 'ICEBERG'" in ddl.sql and "projection" not in ddl.sql.lower()
    assert not (SQL_DIR / "athena_repair_partitions.sql").exists()  # nothing to repair: snapshots decide


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def lake_env(lake, monkeypatch):
    monkeypatch.setenv("MARKET_ETL_LAKE", str(lake[0]))
    monkeypatch.setenv("MARKET_ETL_RUNTIME", "local")
    return lake


def test_cli_prints_a_table_and_its_cost_on_stderr(lake_env, capsys):
    assert cli_main(["query", "order_flow_by_symbol"]) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0].split() == ["symbol", "buy_volume", "sell_volume", "buy_trades", "sell_trades", "imbalance"]
    assert [line.split()[0] for line in out[2:]] == ["BTCUSDT", "ETHUSDT"]
    (cost,) = captured.err.splitlines()
    assert cost.startswith("(2 rows in ") and f"of {8 * FILES_PER_DAY} files" in cost


def test_cli_csv_and_json_are_machine_readable(lake_env, capsys):
    _, rows = lake_env
    expected = expect_vwap_1m(rows, parameters_for(symbol=SYMBOL, date=DATE))
    assert cli_main(["query", "vwap_1m", "--symbol", SYMBOL, "--date", DATE, "--format", "csv"]) == 0
    captured = capsys.readouterr()
    parsed = list(csv.DictReader(io.StringIO(captured.out)))
    assert len(parsed) == len(expected) and "scanned 2 of" in captured.err
    assert [Decimal(r["volume"]) for r in parsed] == [e[2] for e in expected]

    assert cli_main(["query", "vwap_1m", "--symbol", SYMBOL, "--date", DATE, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [dt.datetime.fromisoformat(r["minute"]) for r in records] == [e[0] for e in expected]
    assert [r["vwap"] for r in records] == pytest.approx([e[1] for e in expected], rel=1e-12)


def test_cli_ad_hoc_sql_binds_parameters(lake_env, capsys):
    _, rows = lake_env
    sql = "SELECT count(*) AS n FROM market_data.trades_binance WHERE symbol = :symbol AND year = :year AND month = :month"
    assert cli_main(["query", "--sql", sql, "--symbol", "ETHUSDT", "--month", "2025-07", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": len(_rows(rows, "ETHUSDT", 2025, 7))}]


@pytest.mark.parametrize("argv, code, message", [
    (["query", "vwap_1m", "--symbol", "BTCUSDT' OR '1'='1", "--date", DATE], 2, "invalid symbol"),
    (["query", "vwap_1m", "--symbol", SYMBOL], 2, "needs day, month, year"),
    (["query", "--sql", "DROP VIEW market_data.trades_binance"], 3, "only read statements"),
    (["query", "--sql", "SELEC 1"], 3, "does not parse"),
    (["query", "--sql", "SELECT nope FROM market_data.trades_binance"], 3, "Binder Error"),
    (["query"], 2, "give a query NAME or --sql"),
])
def test_cli_errors_are_one_clear_line(lake_env, capsys, argv, code, message):
    assert cli_main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_cli_without_a_catalog_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MARKET_ETL_LAKE", str(tmp_path / "empty"))
    assert cli_main(["query", "trades_by_symbol"]) == 4
    assert "materialise market_data/trades_binance first" in capsys.readouterr().err


def test_cli_lists_queries_with_parameters(capsys):
    assert cli_main(["query", "--list"]) == 0
    out = capsys.readouterr().out
    assert "vwap_1m  [athena_sample_queries.sql]  :year :month :day :symbol" in out
    assert "ohlcv_1m  [athena_analytics.sql]" in out


def test_demo_prints_the_three_original_queries(lake, capsys):
    show_demo_queries(DuckDBSqlEngine(lake_url=str(lake[0])), symbol=SYMBOL, date=DATE)
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("-- ")] == [
        f"-- {name}" for name in ("trades_by_symbol", "vwap_1m", "original_order_flow")]
    assert "more rows" in out and "scanned 2 of 16 files" in out


def test_demo_without_a_catalog_says_so_in_one_line(tmp_path, capsys):
    show_demo_queries(DuckDBSqlEngine(lake_url=str(tmp_path)), symbol=SYMBOL, date=DATE)
    assert capsys.readouterr().out.splitlines()[-1].startswith("queries: no catalog at ")


def test_market_etl_query_entry_point(lake_env):
    """The real `market-etl` console script, in its own process."""
    env = {**os.environ, "MARKET_ETL_LAKE": str(lake_env[0])}
    script = os.path.join(os.path.dirname(sys.executable), "market-etl")
    done = subprocess.run([script, "query", "trades_by_symbol", "--format", "csv"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [r["symbol"] for r in csv.DictReader(io.StringIO(done.stdout))] == ["BTCUSDT", "ETHUSDT"]


# ---------------------------------------------------------------- latency on a demo-sized lake

DEMO_SYMBOLS, DEMO_MONTHS, DEMO_TRADES_PER_DAY = ("BTCUSDT", "ETHUSDT", "BNBUSDT"), ("2025-07", "2025-08", "2025-09"), 2000


def _best_of(engine, query, runs=5):
    results = [engine.query(query) for _ in range(runs)]
    return min(r.seconds for r in results), results[-1]


def test_queries_on_a_demo_sized_lake_scan_only_the_files_they_need(tmp_path):
    """The demo's lake: 3 symbols x 3 months x every day x 2000 trades (552,000 rows, 276 files).

    The times are printed for the record; `make bench` (bench query) is what measures them, since a wall-clock
    bound here would fail on a loaded machine rather than on slow code."""
    engine = DuckDBSqlEngine(lake_url=str(tmp_path))
    for month in DEMO_MONTHS:
        for symbol in DEMO_SYMBOLS:
            partition = TradePartition(symbol, month)
            write_bulk_partition(tmp_path, partition, DEMO_TRADES_PER_DAY)
            publish_partition(tmp_path, partition)

    vwap_seconds, vwap = _best_of(engine, bind(get_query("vwap_1m"), parameters_for(symbol="BTCUSDT",
                                                                                    date="2025-07-15")))
    count_seconds, counts = _best_of(engine, bind(get_query("trades_by_symbol")))
    print(f"\nlatency (best of 5): vwap_1m one symbol-day {vwap_seconds * 1000:.1f} ms "
          f"({vwap.files_scanned} of {vwap.files_total} files); trades_by_symbol whole lake "
          f"{count_seconds * 1000:.1f} ms ({counts.files_scanned} files)")
    assert vwap.files_scanned == 1 and counts.files_scanned == 276
    assert sum(r[1] for r in counts.rows) == 3 * 92 * DEMO_TRADES_PER_DAY
