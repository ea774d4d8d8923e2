"""Iceberg tables for the read API's tests, built with pyiceberg alone: the local runtime's SQL catalog at
`<lake>/catalog/iceberg.db`, tables `market_data.trades_binance` and `market_data.ohlcv_1m` with identity
partitions, data files written with pyarrow (partition columns inside each file, constant per file) and
committed with `add_files`, one snapshot per call, as the publish step commits a checked version."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from market_etl.core.tables import TRADES_COLUMNS
from market_etl.core.keys import TradePartition
from market_etl_tests.lake_fixtures import SourceTrade

PARTITION_FIELDS = (("year", pa.int32()), ("month", pa.int32()), ("day", pa.int32()), ("symbol", pa.string()))
ARROW_TYPES = {"bigint": pa.int64(), "boolean": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC"),
               "decimal(18,8)": pa.decimal128(18, 8), "decimal(28,8)": pa.decimal128(28, 8)}
TRADES_SCHEMA = pa.schema([(n, ARROW_TYPES[t]) for n, t in TRADES_COLUMNS] + list(PARTITION_FIELDS))
OHLCV_PARTITION_FIELDS = ("year", "month", "symbol")


def iceberg_catalog(lake: Path):
    from pyiceberg.catalog.sql import SqlCatalog

    (lake / "catalog").mkdir(parents=True, exist_ok=True)
    from market_etl.read import ICEBERG_CATALOG_KEY, ICEBERG_CATALOG_NAME

    return SqlCatalog(ICEBERG_CATALOG_NAME, uri=f"sqlite:///{lake / ICEBERG_CATALOG_KEY}", warehouse=lake.as_uri())


def create_table(catalog, name: str, schema: pa.Schema, partition_fields: Sequence[str]):
    catalog.create_namespace_if_not_exists("market_data")
    table = catalog.create_table(f"market_data.{name}", schema=schema)
    with table.update_spec() as spec:
        for field in partition_fields:
            spec.add_identity(field)
    return catalog.load_table(f"market_data.{name}")


def trades_table_rows(partition: TradePartition, trades: Sequence[SourceTrade]) -> dict[int, pa.Table]:
    """One Arrow table per day, partition columns included."""
    by_day: dict[int, list[dict]] = {}
    for t in trades:
        by_day.setdefault(t.day, []).append({
            "trade_id": t.trade_id, "price": t.price, "quantity": t.quantity, "quote_qty": t.quote_qty,
            "trade_time": t.trade_time, "is_buyer_maker": t.is_buyer_maker, "is_best_match": t.is_best_match,
            "year": partition.year, "month": partition.month_number, "day": t.day, "symbol": partition.symbol})
    return {day: pa.Table.from_pylist(rows, schema=TRADES_SCHEMA) for day, rows in by_day.items()}


def write_trades_files(lake: Path, partition: TradePartition, trades: Sequence[SourceTrade], tag: str) -> list[str]:
    """Data files under the table's location (`<lake>/market_data.db/trades_binance/data/...`), one per day."""
    paths = []
    for day, table in sorted(trades_table_rows(partition, trades).items()):
        directory = (lake / "market_data.db" / "trades_binance" / "data" /
                     f"year={partition.year}/month={partition.month_number}/day={day}/symbol={partition.symbol}")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{tag}.parquet"
        pq.write_table(table, path)
        paths.append(f"file://{path}")  # not as_uri(): it would escape the "=" of the key
    return paths


def write_ohlcv_file(lake: Path, partition: TradePartition, bars: pa.Table, tag: str) -> str:
    """One symbol-month of bars (as `market-etl query ohlcv_1m` exports them) with its partition columns."""
    n = bars.num_rows
    table = (bars.append_column("year", pa.array([partition.year] * n, pa.int32()))
             .append_column("month", pa.array([partition.month_number] * n, pa.int32()))
             .append_column("symbol", pa.array([partition.symbol] * n, pa.string())))
    directory = lake / "market_data.db" / "ohlcv_1m" / "data" / f"year={partition.year}/month={partition.month_number}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"symbol={partition.symbol}-{tag}.parquet"
    pq.write_table(table, path)
    return f"file://{path}"


def commit_files(table, paths: list[str], branch: str | None = "main") -> int:
    """add_files in one snapshot; returns its id (of `branch`'s head)."""
    if branch != "main" and branch not in table.metadata.refs:
        table.manage_snapshots().create_branch(table.current_snapshot().snapshot_id, branch).commit()
    table.add_files(paths, branch=branch)
    table = table.refresh()
    return table.metadata.snapshot_by_name(branch).snapshot_id


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
