"""The notebook read API (market_etl.read) over Iceberg tables built with pyiceberg: it returns exactly what
`market-etl query` returns for the same range, keeps decimals exact, prunes partitions from the range,
honours as_of, never returns a file that is not in a published snapshot, and says clearly what is wrong."""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market_etl import read
from market_etl.core.keys import TradePartition
from market_etl.resources.sql import DuckDBSqlEngine
from market_etl_tests.iceberg_fixtures import (
    TRADES_SCHEMA,
    commit_files,
    create_table,
    iceberg_catalog,
    write_ohlcv_file,
    write_trades_files,
)
from market_etl_tests.lake_fixtures import build_processed_lake, generate_trades

BTC, ETH = TradePartition("BTCUSDT", "2025-07"), TradePartition("ETHUSDT", "2025-07")
BTC_AUGUST = TradePartition("BTCUSDT", "2025-08")
MARKET_ETL = os.path.join(os.path.dirname(sys.executable), "market-etl")
TRADE_COLUMNS = ["trade_id", "price", "quantity", "quote_qty", "trade_time", "is_buyer_maker", "is_best_match"]


def _query(lake: Path, args: list[str], output: Path) -> pa.Table:
    """`market-etl query ... --output file.parquet`, read back."""
    env = {**os.environ, "MARKET_ETL_RUNTIME": "local", "MARKET_ETL_LAKE": str(lake)}
    done = subprocess.run([MARKET_ETL, "query", *args, "--output", str(output)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return pq.read_table(output)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """The same trades twice: Hive files registered in the DuckDB catalog (what `market-etl query` reads),
    and Iceberg tables committed with add_files (what the read API reads). Snapshots: July days 1-3 of
    BTC and ETH, then August days 1-2 of BTC; ohlcv_1m from the query command's own bars."""
    root = tmp_path_factory.mktemp("read-lake")
    source = build_processed_lake(root, [BTC, ETH], range(1, 4), 150, seed=5)
    source[BTC_AUGUST] = generate_trades(BTC_AUGUST, range(1, 3), 150, seed=5)
    build_processed_lake(root, [BTC_AUGUST], range(1, 3), 150, seed=5)

    catalog = iceberg_catalog(root)
    trades = create_table(catalog, "trades_binance", TRADES_SCHEMA, ("year", "month", "day", "symbol"))
    july = commit_files(trades, [p for part in (BTC, ETH) for p in write_trades_files(root, part, source[part], "v1")])
    time.sleep(0.01)  # snapshot timestamps are milliseconds
    july_published_at = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.01)
    august = commit_files(trades.refresh(), write_trades_files(root, BTC_AUGUST, source[BTC_AUGUST], "v1"))
    # What a publish leaves for the query command: DuckDB views over the tables' current snapshots (this
    # creates the other declared tables, ohlcv_1m included, from core.tables).
    DuckDBSqlEngine(lake_url=str(root)).refresh_views(catalog)

    bars = _query(root, ["ohlcv_1m", "--symbol", "BTCUSDT", "--month", "2025-07"], root / "bars.parquet")
    ohlcv = catalog.load_table("market_data.ohlcv_1m")
    commit_files(ohlcv, [write_ohlcv_file(root, BTC, bars, "v1")])
    return {"root": root, "catalog": catalog, "july": july, "august": august, "july_published_at": july_published_at}


@pytest.fixture
def local_env(lake, monkeypatch):
    monkeypatch.setenv("MARKET_ETL_RUNTIME", "local")
    monkeypatch.setenv("MARKET_ETL_LAKE", str(lake["root"]))
    return lake


def _naive_utc(value):
    """The API's times are UTC-aware (Iceberg timestamptz); the DuckDB views show the same instants naive."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def _rows(table: pa.Table, columns=TRADE_COLUMNS) -> list[tuple]:
    return sorted(tuple(_naive_utc(r[c]) for c in columns) for r in table.select(columns).to_pylist())


def test_trades_equal_the_query_command(local_env, tmp_path):
    got = read.trades("BTCUSDT", "2025-07-02", "2025-08-01")
    expected = _query(local_env["root"], [
        "--sql", f"SELECT {', '.join(TRADE_COLUMNS)} FROM market_data.trades_binance WHERE symbol = :symbol "
                 "AND ((year = 2025 AND month = 7 AND day >= 2) OR (year = 2025 AND month = 8 AND day <= 1))",
        "--symbol", "BTCUSDT"], tmp_path / "expected.parquet")
    assert got.num_rows == expected.num_rows == 3 * 150
    assert _rows(got) == _rows(expected)
    assert got.schema.field("price").type == pa.decimal128(18, 8)
    assert got.schema.field("quantity").type == pa.decimal128(28, 8)
    assert set(got.column("symbol").to_pylist()) == {"BTCUSDT"}


def test_ohlcv_1m_equals_the_query_command(local_env, tmp_path):
    got = read.ohlcv_1m("BTCUSDT", dt.date(2025, 7, 2))
    month = _query(local_env["root"], ["ohlcv_1m", "--symbol", "BTCUSDT", "--month", "2025-07"],
                   tmp_path / "bars.parquet")
    day = month.filter(pa.compute.equal(pa.compute.day(month.column("bar_time")), 2))
    assert 0 < got.num_rows == day.num_rows < month.num_rows
    assert _rows(got, month.column_names) == _rows(day, month.column_names)


def test_the_range_prunes_partitions(lake):
    table = lake["catalog"].load_table("market_data.trades_binance")
    row_filter = read.date_range_filter(read.TABLES["trades_binance"], table, "BTCUSDT", dt.date(2025, 7, 3),
                                        dt.date(2025, 8, 1))
    files = [task.file.file_path for task in table.scan(row_filter=row_filter).plan_files()]
    assert sorted(f.split("/data/")[1].rsplit("/", 1)[0] for f in files) == [
        "year=2025/month=7/day=3/symbol=BTCUSDT", "year=2025/month=8/day=1/symbol=BTCUSDT"]


def test_as_of_a_snapshot_id_or_a_time(local_env):
    latest = read.trades("BTCUSDT", "2025-07-01", "2025-08-31")
    at_july = read.trades("BTCUSDT", "2025-07-01", "2025-08-31", as_of=local_env["july"])
    at_time = read.trades("BTCUSDT", "2025-07-01", "2025-08-31", as_of=local_env["july_published_at"])
    assert latest.num_rows == 5 * 150 and at_july.num_rows == at_time.num_rows == 3 * 150
    assert set(at_july.column("month").to_pylist()) == {7}
    with pytest.raises(read.NothingPublished, match="published at or before"):
        read.trades("BTCUSDT", "2025-07-01", as_of="2001-01-01T00:00:00")


def test_files_not_in_a_published_snapshot_are_never_read(local_env):
    """A file written beside the table's data but never committed, and a version staged on an audit
    branch: neither is returned, and the staged snapshot cannot be asked for by id."""
    root, catalog = local_env["root"], local_env["catalog"]
    stray = generate_trades(BTC, [2], 7, seed=99, first_id=10_000_000)
    write_trades_files(root, BTC, stray, "uncommitted")
    staged = generate_trades(BTC, [3], 9, seed=98, first_id=20_000_000)
    table = catalog.load_table("market_data.trades_binance")
    staged_id = commit_files(table, write_trades_files(root, BTC, staged, "staged"), branch="audit")

    got = read.trades("BTCUSDT", "2025-07-01", "2025-07-31")
    ids = set(got.column("trade_id").to_pylist())
    assert got.num_rows == 3 * 150 and ids.isdisjoint({t.trade_id for t in stray + staged})
    with pytest.raises(read.NothingPublished, match="not a published snapshot"):
        read.trades("BTCUSDT", "2025-07-01", as_of=staged_id)


@pytest.mark.parametrize("call, error, message", [
    (lambda: read.trades("DOGEUSDT", "2025-07-01"), read.UnknownSymbol, "symbols there: BTCUSDT, ETHUSDT"),
    (lambda: read.trades("btc usdt", "2025-07-01"), read.UnknownSymbol, "invalid symbol"),
    (lambda: read.trades("ETHUSDT", "2025-08-01", "2025-08-31"), read.EmptyRange, "published months for it: 2025-07"),
    (lambda: read.trades("BTCUSDT", "2025-07-03", "2025-07-01"), read.EmptyRange, "ends (2025-07-01) before"),
    (lambda: read.trades("BTCUSDT", "July 1st"), read.EmptyRange, "expected YYYY-MM-DD"),
])
def test_clear_errors(local_env, call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_a_lake_with_nothing_published(tmp_path, monkeypatch):
    monkeypatch.setenv("MARKET_ETL_LAKE", str(tmp_path))
    with pytest.raises(read.NothingPublished, match="no Iceberg catalog"):
        read.trades("BTCUSDT", "2025-07-01")
    iceberg_catalog(tmp_path)  # a catalog without tables
    with pytest.raises(read.NothingPublished, match="does not exist"):
        read.trades("BTCUSDT", "2025-07-01")


def test_the_api_imports_neither_dagster_nor_spark(local_env):
    probe = ("import sys; from market_etl.read import trades; t = trades('BTCUSDT', '2025-07-01'); "
             "print(t.num_rows, [m for m in ('dagster', 'pyspark') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MARKET_ETL_LAKE": str(local_env["root"])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(None, 1) == ["150", "[]\n"]


README = Path(__file__).resolve().parents[2] / "README.md"


def notebook_blocks() -> list[str]:
    """The python code blocks of the README's "From a notebook" section, in order."""
    text = README.read_text()
    section = text[text.index("## From a notebook"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_readme_notebook_section_runs_as_written(local_env, capsys):
    blocks = notebook_blocks()
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md (From a notebook)", "exec"), namespace)
    assert namespace["btc"].num_rows == 3 * 150 and namespace["df"].shape[0] == 3 * 150
    assert namespace["first_version"].num_rows == 3 * 150
    out = capsys.readouterr().out
    assert "450 decimal128(18, 8)" in out and "DOGEUSDT has nothing published" in out


def test_the_same_call_reads_glue_and_s3_on_the_aws_runtime(moto_endpoint, s3_bucket, tmp_path, monkeypatch):
    """aws runtime: the Iceberg table in the Glue Data Catalog, its files in S3 (moto's server for both);
    `read.trades` is called exactly as locally, the endpoints coming from the environment."""
    import boto3
    from pyiceberg.catalog.glue import GlueCatalog

    from market_etl_tests.iceberg_fixtures import trades_table_rows

    props = {"glue.endpoint": moto_endpoint, "glue.region": "us-east-1", "s3.endpoint": moto_endpoint,
             "s3.region": "us-east-1"}
    writer = GlueCatalog("market_etl", **props)
    writer.create_namespace_if_not_exists("market_data")
    name = "market_data.trades_binance"
    if writer.table_exists(name):
        writer.drop_table(name)
    table = writer.create_table(name, schema=TRADES_SCHEMA, location=f"s3://{s3_bucket}/market_data/trades_binance")
    with table.update_spec() as spec:
        for field in ("year", "month", "day", "symbol"):
            spec.add_identity(field)
    table = writer.load_table(name)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    trades = generate_trades(BTC, [1, 2], 40, seed=3)
    paths = []
    for day, rows in trades_table_rows(BTC, trades).items():
        local = tmp_path / f"{day}.parquet"
        pq.write_table(rows, local)
        key = f"market_data/trades_binance/data/year=2025/month=7/day={day}/symbol=BTCUSDT/part.parquet"
        s3.upload_file(str(local), s3_bucket, key)
        paths.append(f"s3://{s3_bucket}/{key}")
    table.add_files(paths)

    monkeypatch.setenv("MARKET_ETL_RUNTIME", "aws")
    monkeypatch.setenv("MARKET_ETL_LAKE", f"s3://{s3_bucket}/")
    monkeypatch.setenv("MARKET_ETL_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", moto_endpoint)
    try:
        got = read.trades("BTCUSDT", "2025-07-02")
    finally:
        writer.drop_table(name)  # moto's Glue lives as long as the test process
    day_two = [t for t in trades if t.day == 2]
    assert _rows(got) == sorted((t.trade_id, t.price, t.quantity, t.quote_qty, t.trade_time.replace(tzinfo=None),
                                 t.is_buyer_maker, t.is_best_match) for t in day_two)
