"""A processed lake for the catalog, SQL and analytics tests, until the Spark ETL writes the real one.

Source rows are generated here (deterministic per seed) and written as the ETL writes them: run-unique
keys `processed/trades/year=Y/month=M/day=D/symbol=S/<run>-part-N.snappy.parquet`
(`keys.staged_trades_file_key`), columns `trade_id bigint, price decimal(18,8), quantity decimal(28,8),
quote_qty decimal(28,8), trade_time` as UTC-adjusted TIMESTAMP_MICROS (what Spark's TimestampType
becomes), `is_buyer_maker, is_best_match boolean`, then the partition columns year, month, day (int)
and symbol. `publish_partition` commits the latest written version to the Iceberg table, as
market_data/trades_binance does. Tests compute their expected values from the same Python
rows, independently of any SQL engine. To switch to the real ETL, replace `write_processed_partition`
with a run of processed/trades over `market_etl_devtools.mirror.generate.generate_month` output.
"""
from __future__ import annotations

import csv
import datetime as dt
import random
import shutil
import tempfile
import uuid
import zlib
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Iterable, Sequence

from market_etl.core.keys import TradePartition, Zone, lake_key, new_run_id, staged_trades_file_key

EIGHT_PLACES = Decimal("0.00000001")
BASE_PRICES = {"BTCUSDT": Decimal("60000"), "ETHUSDT": Decimal("3000")}
MICROS_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class SourceTrade:
    trade_id: int
    price: Decimal
    quantity: Decimal
    quote_qty: Decimal
    trade_time: dt.datetime  # UTC, microseconds
    is_buyer_maker: bool
    is_best_match: bool

    @property
    def day(self) -> int:
        return self.trade_time.day


def generate_trades(partition: TradePartition, days: Iterable[int], trades_per_day: int, seed: int = 0,
                    first_id: int = 1) -> list[SourceTrade]:
    """Trades for the given days of the partition's month: contiguous ids, times sorted inside each day,
    a random-walk price, quantities spanning four orders of magnitude (so every notional bucket fills)."""
    rng = random.Random(f"{seed}-{partition.symbol}-{partition.month}")
    price = BASE_PRICES.get(partition.symbol, Decimal("300"))
    trades, trade_id = [], first_id
    for day in days:
        midnight = dt.datetime(partition.year, partition.month_number, day, tzinfo=dt.timezone.utc)
        for offset in sorted(rng.randrange(MICROS_PER_DAY) for _ in range(trades_per_day)):
            price = max(Decimal("0.01"), price * (1 + Decimal(rng.gauss(0, 0.0005)))).quantize(EIGHT_PLACES)
            quantity = Decimal(10 ** rng.uniform(-4, 1.3)).quantize(EIGHT_PLACES) or EIGHT_PLACES
            trades.append(SourceTrade(
                trade_id=trade_id,
                price=price,
                quantity=quantity,
                quote_qty=(price * quantity).quantize(EIGHT_PLACES, rounding=ROUND_HALF_EVEN),
                trade_time=midnight + dt.timedelta(microseconds=offset),
                is_buyer_maker=rng.random() < 0.5,
                is_best_match=True,
            ))
            trade_id += 1
    return trades


TRADES_DDL = """CREATE TABLE trades (trade_id BIGINT, price DECIMAL(18,8), quantity DECIMAL(28,8),
    quote_qty DECIMAL(28,8), trade_time TIMESTAMP WITH TIME ZONE, is_buyer_maker BOOLEAN, is_best_match BOOLEAN)"""


def _write_days(con, lake_root: Path, partition: TradePartition, files_per_day: int) -> list[Path]:
    """COPY table `trades` to the partition's day directories, replacing each day (Spark dynamic overwrite)."""
    written = []
    days = [d for (d,) in con.execute(
        "SELECT DISTINCT day(timezone('UTC', trade_time)) FROM trades ORDER BY 1").fetchall()]
    run = new_run_id()
    for day in days:
        for part in range(files_per_day):
            path = lake_root / staged_trades_file_key(partition, day, run, part)
            path.parent.mkdir(parents=True, exist_ok=True)
            con.execute(
                f"COPY (SELECT *, {partition.year}::INTEGER AS year, {partition.month_number}::INTEGER AS month, "
                f"{day}::INTEGER AS day, '{partition.symbol}' AS symbol FROM trades "
                f"WHERE day(timezone('UTC', trade_time)) = {day} "
                f"AND trade_id % {files_per_day} = {part} ORDER BY trade_id) "
                f"TO '{path}' (FORMAT parquet, COMPRESSION snappy)"
            )
            written.append(path)
    return written


def publish_partition(lake_root: Path, partition: TradePartition) -> dict:
    """Commit the partition's most recently written files to trades_binance (replacing the symbol-month),
    then refresh the DuckDB views: what the publish asset does. Returns the commit's metadata."""
    from market_etl.core.tables import TRADES
    from market_etl.lake import LocalLake
    from market_etl.lake.iceberg import open_catalog, replace_partition
    from market_etl.resources.sql import DuckDBSqlEngine

    lake = LocalLake(lake_root)
    keys = [o.key for o in lake.list(lake_key(Zone.PROCESSED, partition) + "/")
            if f"/symbol={partition.symbol}/" in o.key and o.key.endswith(".parquet")]
    run = max(k.rsplit("/", 1)[1].split("-part-")[0] for k in keys)
    catalog = open_catalog(lake)
    commit = replace_partition(catalog, lake, TRADES, partition, [k for k in keys if f"/{run}-part-" in k], {},
                               run_id=run)
    DuckDBSqlEngine(lake_url=str(lake_root)).refresh_views(catalog)
    return commit.metadata()


def write_processed_partition(lake_root: Path, partition: TradePartition, trades: Sequence[SourceTrade],
                              files_per_day: int = 1) -> list[Path]:
    """Write these trades as the ETL would."""
    import duckdb

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "trades.csv"
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            for t in trades:
                writer.writerow([t.trade_id, t.price, t.quantity, t.quote_qty, t.trade_time.isoformat(),
                                 t.is_buyer_maker, t.is_best_match])
        con = duckdb.connect()
        con.execute(TRADES_DDL)
        con.execute(f"COPY trades FROM '{csv_path}' (HEADER false)")
        written = _write_days(con, lake_root, partition, files_per_day)
        con.close()
    return written


def write_bulk_partition(lake_root: Path, partition: TradePartition, trades_per_day: int, seed: int = 0) -> None:
    """Every day of the month, generated inside DuckDB: for size (latency measurements), when no test
    needs the rows in Python. Same layout and schema as `write_processed_partition`."""
    import duckdb

    days = (partition.next_month_first_day - partition.first_day).days
    base = BASE_PRICES.get(partition.symbol, Decimal("300"))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SELECT setseed(?)", [zlib.crc32(f"{seed}-{partition}".encode()) / 2**32])
    con.execute(TRADES_DDL)
    con.execute(f"""
        INSERT INTO trades
        WITH times AS (
            SELECT make_timestamptz({partition.year}, {partition.month_number}, d.day, 0, 0, 0)
                   + to_microseconds((random() * {MICROS_PER_DAY - 1})::BIGINT) AS trade_time
            FROM range(1, {days + 1}) d(day), range({trades_per_day})
        ), priced AS (
            SELECT trade_time, ({base} * (1 + (random() - 0.5) / 50))::DECIMAL(18,8) AS price,
                   pow(10, random() * 5.3 - 4)::DECIMAL(28,8) AS quantity
            FROM times
        )
        SELECT row_number() OVER (ORDER BY trade_time), price, quantity, (price * quantity)::DECIMAL(28,8),
               trade_time, random() < 0.5, true
        FROM priced""")
    _write_days(con, lake_root, partition, files_per_day=1)
    con.close()


def build_processed_lake(lake_root: Path, partitions: Sequence[TradePartition], days: Iterable[int],
                         trades_per_day: int, seed: int = 0, files_per_day: int = 1
                         ) -> dict[TradePartition, list[SourceTrade]]:
    """Generate and write several partitions; returns the source rows of each."""
    days = list(days)
    source = {}
    for p in partitions:
        source[p] = generate_trades(p, days, trades_per_day, seed=seed)
        write_processed_partition(lake_root, p, source[p], files_per_day=files_per_day)
    return source


def assert_rows_equal(actual: Sequence[tuple], expected: Sequence[tuple]) -> None:
    """Row by row: floats to 1e-12 relative (engines may round the last bit), everything else exactly and
    with the same Python type (Decimal stays Decimal, timestamps stay naive UTC datetimes)."""
    import pytest

    assert len(actual) == len(expected)
    for a_row, e_row in zip(actual, expected):
        assert len(a_row) == len(e_row)
        for a, e in zip(a_row, e_row):
            if isinstance(e, float):
                assert a == pytest.approx(e, rel=1e-12), (a_row, e_row)
            else:
                assert a == e and type(a) is type(e), (a_row, e_row)
