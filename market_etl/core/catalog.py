"""The catalog: what makes lake data queryable as tables, and only the data that passed its checks.

Partitions are registered, never discovered: the catalog asset registers a symbol-month after
processed/trades passed its blocking checks for it, so a failed check leaves what queries see
unchanged (docs/reliability.md case 24).

- aws runtime: the Glue Data Catalog. One Glue partition per (year, month, day, symbol), its location
  the day's directory, registered with BatchCreatePartition (Athena reads every file under it).
  Analytics tables: one Glue partition per (year, month, symbol), its location the prefix of the one
  materialisation (`.../symbol=S/run-<id>/`) that readers see; a new run switches it, then older runs go.
- local runtime: a DuckDB database file in the lake (`catalog/market_etl.duckdb`). It holds
  `market_data.registered_files` (one row per registered Parquet file, the local "partition list") and
  one view per table over exactly those files, rebuilt whenever a partition is (re)registered. Listing
  files instead of globbing directories means a file that lands later (say, from a re-run whose checks
  then fail) is not visible until its partition is registered again; a registered file that disappeared
  makes the queries that touch it fail loudly rather than silently return other data.
  Writers take an exclusive lock, build the new database in a hidden temporary copy and rename it into
  place: readers (read-only connections) are never blocked and see the old or the new catalog, whole.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from market_etl.core.keys import RUN_ID_PATTERN, TradePartition, Zone, lake_key
from market_etl.lake.base import Lake, ObjectInfo

DATABASE = "market_data"
TRADES_TABLE = "trades_binance"
# The processed trades, in Athena / Glue types: the ETL writes these (market_etl.core.trades), and
# sql/athena_create_trades_table.sql and terraform must agree (tests compare).
TRADES_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trade_id", "bigint"),
    ("price", "decimal(18,8)"),
    ("quantity", "decimal(28,8)"),
    ("quote_qty", "decimal(28,8)"),
    ("trade_time", "timestamp"),
    ("is_buyer_maker", "boolean"),
    ("is_best_match", "boolean"),
)
TRADES_PARTITION_KEYS: tuple[tuple[str, str], ...] = (("year", "int"), ("month", "int"), ("day", "int"),
                                                      ("symbol", "string"))
# Not "market_data.duckdb": DuckDB names the attached database after the file, and a database named like
# the schema makes `market_data.trades_binance` ambiguous.
CATALOG_DB_KEY = lake_key(Zone.CATALOG, dataset="market_etl") + ".duckdb"
REGISTRY = f"{DATABASE}.registered_files"
TEMP_PREFIX = ".inprogress-"  # as the lake's own temporary files: hidden from listings


class CatalogError(RuntimeError):
    """The catalog cannot be built or updated as asked."""


class NoProcessedData(CatalogError):
    pass


class SchemaMismatch(CatalogError):
    pass


def sql_string(value: str) -> str:
    """A SQL string literal (for paths in DuckDB DDL, where parameters are not allowed)."""
    return "'" + value.replace("'", "''") + "'"


# ---------------------------------------------------------------- the processed zone, as the catalog sees it


def processed_files(lake: Lake, partition: TradePartition) -> dict[int, list[ObjectInfo]]:
    """The partition's Parquet files by day, from a listing of its month directory.

    Only keys exactly as `lake_key` builds them count; Spark's `.crc`/`_SUCCESS` and temporary files do not.
    """
    month_prefix = lake_key(Zone.PROCESSED, partition)
    pattern = re.compile(re.escape(month_prefix) + r"/day=([1-9]\d?)/symbol=([A-Z0-9]+)/([^/._][^/]*\.parquet)")
    by_day: dict[int, list[ObjectInfo]] = {}
    for obj in lake.list(month_prefix + "/"):
        match = pattern.fullmatch(obj.key)
        if match and match.group(2) == partition.symbol:
            by_day.setdefault(int(match.group(1)), []).append(obj)
    return dict(sorted(by_day.items()))


def require_processed_files(lake: Lake, partition: TradePartition) -> dict[int, list[ObjectInfo]]:
    files = processed_files(lake, partition)
    if not files:
        raise NoProcessedData(
            f"no processed Parquet for {partition} under {lake.uri(lake_key(Zone.PROCESSED, partition))}/"
            f"day=*/symbol={partition.symbol}/: materialise processed/trades for this partition first"
        )
    return files


# ---------------------------------------------------------------- local catalog: a DuckDB file


@dataclass(frozen=True)
class CatalogTable:
    """A table in the local catalog: a view over the registered Parquet files of one lake dataset."""

    name: str
    hive_keys: tuple[str, ...]  # partition directories in path order (year, month, [day,] symbol)
    select: str  # the view's select list over read_parquet(...)
    # The data files' columns in order, Athena / Glue types: the Glue table (terraform) declares exactly these.
    columns: tuple[tuple[str, str], ...] = ()
    empty_select: str | None = None  # the typed, empty view before anything is registered; None: no view yet
    expected_parquet: Mapping[str, str] | None = None  # column -> DuckDB type every file must have

    @property
    def partition_keys(self) -> tuple[tuple[str, str], ...]:
        """(name, Glue type) of the partition keys: the symbol is a string, the date parts integers."""
        return tuple((key, "string" if key == "symbol" else "int") for key in self.hive_keys)

    @property
    def hive_types(self) -> str:
        return "{" + ", ".join(f"'{k}': {_duckdb_type(t)}" for k, t in self.partition_keys) + "}"


_DUCKDB_TYPES = {"bigint": "BIGINT", "boolean": "BOOLEAN", "timestamp": "TIMESTAMP", "int": "INTEGER",
                 "string": "VARCHAR"}


def _duckdb_type(athena_type: str) -> str:
    return _DUCKDB_TYPES.get(athena_type, athena_type.upper())


# How DuckDB reads the processed Parquet the ETL writes (Spark TimestampType as TIMESTAMP_MICROS = UTC instants).
PROCESSED_PARQUET_TYPES: dict[str, str] = {
    name: "TIMESTAMP WITH TIME ZONE" if athena_type == "timestamp" else _duckdb_type(athena_type)
    for name, athena_type in TRADES_COLUMNS
}


TRADES = CatalogTable(
    name=TRADES_TABLE,
    hive_keys=("year", "month", "day", "symbol"),
    columns=TRADES_COLUMNS,
    # Columns typed as in Athena: trade_time as a UTC wall-clock TIMESTAMP, whatever the session time zone.
    select=", ".join(
        "timezone('UTC', trade_time) AS trade_time" if name == "trade_time" else name
        for name, _ in TRADES_COLUMNS + TRADES_PARTITION_KEYS
    ),
    empty_select="SELECT " + ", ".join(
        f"CAST(NULL AS {_duckdb_type(t)}) AS {name}" for name, t in TRADES_COLUMNS + TRADES_PARTITION_KEYS
    ) + " WHERE false",
    expected_parquet=PROCESSED_PARQUET_TYPES,
)
# What the analytics queries (sql/athena_analytics.sql) return, typed as Athena types them: SUM of a
# decimal(p,8) is decimal(38,8), MIN/MAX/min_by keep the column's type, COUNT is bigint. UNLOAD writes these
# columns; the partition keys live in the path only. test_athena_analytics.py checks the names and types.
OHLCV_1M_COLUMNS: tuple[tuple[str, str], ...] = (
    ("bar_time", "timestamp"),
    ("open", "decimal(18,8)"),
    ("high", "decimal(18,8)"),
    ("low", "decimal(18,8)"),
    ("close", "decimal(18,8)"),
    ("volume", "decimal(38,8)"),
    ("quote_volume", "decimal(38,8)"),
    ("vwap", "double"),
    ("trades", "bigint"),
    ("buy_volume", "decimal(38,8)"),
)
DAILY_TRADE_STATS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trade_date", "date"),
    ("trades", "bigint"),
    ("volume", "decimal(38,8)"),
    ("quote_volume", "decimal(38,8)"),
    ("vwap", "double"),
    ("buy_volume", "decimal(38,8)"),
    ("sell_volume", "decimal(38,8)"),
    ("buy_trades", "bigint"),
    ("sell_trades", "bigint"),
    ("largest_trade_qty", "decimal(28,8)"),
    ("largest_trade_quote_qty", "decimal(28,8)"),
    ("first_trade_id", "bigint"),
    ("last_trade_id", "bigint"),
)
ANALYTICS_TABLES = {
    name: CatalogTable(name=name, hive_keys=("year", "month", "symbol"), select="*", columns=columns)
    for name, columns in (("ohlcv_1m", OHLCV_1M_COLUMNS), ("daily_trade_stats", DAILY_TRADE_STATS_COLUMNS))
}


def analytics_table(dataset: str) -> CatalogTable:
    if dataset not in ANALYTICS_TABLES:
        raise CatalogError(f"unknown analytics dataset {dataset!r}; known: {sorted(ANALYTICS_TABLES)}")
    return ANALYTICS_TABLES[dataset]


def analytics_runs(lake: Lake, partition: TradePartition, dataset: str) -> set[str]:
    """Run ids with objects under the analytics partition (`.../symbol=S/run-<id>/...`, aws runtime)."""
    base = lake_key(Zone.ANALYTICS, partition, dataset=dataset)
    pattern = re.compile(re.escape(base) + r"/run-(" + RUN_ID_PATTERN.pattern + r")/.+")
    return {match.group(1) for obj in lake.list(base + "/") if (match := pattern.fullmatch(obj.key))}


@dataclass(frozen=True)
class CatalogFile:
    path: str
    bytes: int
    day: int | None = None


@dataclass(frozen=True)
class Registration:
    """What registering one partition did, and the table's size afterwards."""

    table: str
    partition: TradePartition
    days: int
    files: int
    bytes: int
    rows: int
    table_partitions: int
    table_files: int
    table_rows: int

    def metadata(self) -> dict[str, object]:
        return {
            "table": f"{DATABASE}.{self.table}",
            "days_registered": self.days,
            "files_registered": self.files,
            "bytes_registered": self.bytes,
            "rows_registered": self.rows,
            "table_partitions": self.table_partitions,
            "table_files": self.table_files,
            "table_rows": self.table_rows,
        }


@contextlib.contextmanager
def _catalog_writer(db_path: Path) -> Iterator["object"]:
    """A read-write connection to a private copy of the catalog, renamed over the original on success.

    An exclusive lock (flock on `<db>.lock`) serialises writers across processes; readers keep reading
    the file they opened.
    """
    import duckdb

    db_path.parent.mkdir(parents=True, exist_ok=True)
    with open(db_path.with_name(db_path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        temp = db_path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}-{db_path.name}")
        try:
            if db_path.exists():
                shutil.copyfile(db_path, temp)
            con = duckdb.connect(str(temp))
            try:
                yield con
            finally:
                con.close()
            os.replace(temp, db_path)
        finally:
            temp.unlink(missing_ok=True)
            temp.with_name(temp.name + ".wal").unlink(missing_ok=True)


def _ensure_registry(con) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {DATABASE}")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {REGISTRY} (
        table_name VARCHAR NOT NULL, symbol VARCHAR NOT NULL, year INTEGER NOT NULL, month INTEGER NOT NULL,
        day INTEGER, path VARCHAR NOT NULL, bytes BIGINT NOT NULL, rows BIGINT NOT NULL,
        registered_at TIMESTAMP WITH TIME ZONE NOT NULL)""")
    if con.execute("SELECT count(*) FROM duckdb_views() WHERE schema_name = ? AND view_name = ?",
                   [DATABASE, TRADES.name]).fetchone()[0] == 0:
        _rebuild_view(con, TRADES)


def _parquet_list(paths: Sequence[str]) -> str:
    return "[" + ", ".join(sql_string(p) for p in paths) + "]"


def _validate_schema(con, table: CatalogTable, paths: Sequence[str]) -> None:
    """Every file has exactly the expected columns and types; the error names the file and the column."""
    found: dict[str, dict[str, str]] = {}
    for file_name, column, duckdb_type in con.execute(
        f"SELECT file_name, name, duckdb_type FROM parquet_schema({_parquet_list(paths)}) "
        "WHERE coalesce(num_children, 0) = 0"
    ).fetchall():
        found.setdefault(file_name, {})[column] = duckdb_type
    for path in paths:
        columns = found.get(path, {})
        for column, expected in table.expected_parquet.items():
            actual = columns.get(column)
            if actual != expected:
                hint = (" (write UTC instants as TIMESTAMP_MICROS: Spark TimestampType with "
                        "spark.sql.parquet.outputTimestampType=TIMESTAMP_MICROS)" if column == "trade_time" else "")
                raise SchemaMismatch(f"{path}: column {column} is {actual or 'missing'}, expected {expected}{hint}")
        # Files may carry their own partition columns (the write-audit-publish files do), typed as the keys.
        partition_types = {key: _duckdb_type(kind) for key, kind in table.partition_keys}
        for column in sorted(set(columns) & set(partition_types)):
            if columns[column] != partition_types[column]:
                raise SchemaMismatch(f"{path}: partition column {column} is {columns[column]}, "
                                     f"expected {partition_types[column]}")
        extra = sorted(set(columns) - set(table.expected_parquet) - set(partition_types))
        if extra:
            raise SchemaMismatch(f"{path}: unexpected columns {extra}; expected {sorted(table.expected_parquet)}")


def _rebuild_view(con, table: CatalogTable) -> None:
    paths = [p for (p,) in con.execute(
        f"SELECT path FROM {REGISTRY} WHERE table_name = ? ORDER BY year, month, day, symbol, path", [table.name]
    ).fetchall()]
    view = f"{DATABASE}.{table.name}"
    if paths:
        con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT {table.select} FROM read_parquet("
                    f"{_parquet_list(paths)}, hive_partitioning = true, hive_types = {table.hive_types})")
    elif table.empty_select:
        con.execute(f"CREATE OR REPLACE VIEW {view} AS {table.empty_select}")
    else:
        con.execute(f"DROP VIEW IF EXISTS {view}")


def register_partition_files(db_path: Path, table: CatalogTable, partition: TradePartition,
                             files: Sequence[CatalogFile]) -> Registration:
    """Make exactly `files` the partition's data in `table` (replacing what was registered for it), then
    rebuild the table's view."""
    if not files:
        raise CatalogError(f"nothing to register for {table.name} {partition}")
    with _catalog_writer(db_path) as con:
        _ensure_registry(con)
        paths = [f.path for f in files]
        if table.expected_parquet:
            _validate_schema(con, table, paths)
        rows = dict(con.execute(
            f"SELECT file_name, num_rows FROM parquet_file_metadata({_parquet_list(paths)})").fetchall())
        con.execute(f"DELETE FROM {REGISTRY} WHERE table_name = ? AND symbol = ? AND year = ? AND month = ?",
                    [table.name, partition.symbol, partition.year, partition.month_number])
        now = dt.datetime.now(dt.timezone.utc)
        con.executemany(
            f"INSERT INTO {REGISTRY} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[table.name, partition.symbol, partition.year, partition.month_number, f.day, f.path, f.bytes,
              rows[f.path], now] for f in files],
        )
        _rebuild_view(con, table)
        table_partitions, table_files, table_rows = con.execute(
            f"SELECT count(DISTINCT (symbol, year, month)), count(*), coalesce(sum(rows), 0) FROM {REGISTRY} "
            "WHERE table_name = ?", [table.name]).fetchone()
    return Registration(
        table=table.name, partition=partition, days=len({f.day for f in files if f.day is not None}),
        files=len(files), bytes=sum(f.bytes for f in files), rows=sum(rows.values()),
        table_partitions=table_partitions, table_files=table_files, table_rows=int(table_rows),
    )


# ---------------------------------------------------------------- aws catalog: Glue partitions

GLUE_PARQUET_FORMAT = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                  "Parameters": {"serialization.format": "1"}},
}
GLUE_CREATE_BATCH = 100  # BatchCreatePartition / BatchUpdatePartition limit
GLUE_DELETE_BATCH = 25  # BatchDeletePartition limit


def glue_columns(columns: Sequence[tuple[str, str]] = TRADES_COLUMNS) -> list[dict[str, str]]:
    return [{"Name": name, "Type": type_} for name, type_ in columns]


def glue_partition_values(partition: TradePartition, day: int | None = None,
                          table: CatalogTable = TRADES) -> list[str]:
    """Values in the table's partition key order, spelled as in the directory names (no zero padding)."""
    spelled = {"year": str(partition.year), "month": str(partition.month_number), "symbol": partition.symbol}
    if day is not None:
        spelled["day"] = str(day)
    missing = [key for key in table.hive_keys if key not in spelled]
    if missing:
        raise CatalogError(f"a {table.name} partition needs {missing}")
    return [spelled[key] for key in table.hive_keys]


def glue_partition_input(partition: TradePartition, day: int | None, location: str,
                         table: CatalogTable = TRADES) -> dict:
    return {
        "Values": glue_partition_values(partition, day, table),
        "StorageDescriptor": {"Columns": glue_columns(table.columns), "Location": location, **GLUE_PARQUET_FORMAT},
    }


@dataclass(frozen=True)
class GlueChanges:
    created: int
    updated: int
    deleted: int
    unchanged: int

    def metadata(self) -> dict[str, int]:
        return {"glue_partitions_created": self.created, "glue_partitions_updated": self.updated,
                "glue_partitions_deleted": self.deleted, "glue_partitions_unchanged": self.unchanged}


def _glue_errors(response: dict, action: str) -> None:
    errors = response.get("Errors") or []
    if errors:
        first = errors[0]
        raise CatalogError(f"Glue {action} failed for {len(errors)} partition(s), first "
                           f"{first.get('PartitionValues')}: {first.get('ErrorDetail')}")


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def registered_glue_locations(glue, partition: TradePartition, database: str = DATABASE,
                              table: CatalogTable = TRADES) -> dict[int | None, str]:
    """day -> location of the symbol-month's partitions registered in Glue now (key None for a table
    partitioned by month, like the analytics tables)."""
    expression = f"year = {partition.year} AND month = {partition.month_number} AND symbol = '{partition.symbol}'"
    day_index = table.hive_keys.index("day") if "day" in table.hive_keys else None
    found: dict[int | None, str] = {}
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table.name,
                                                              Expression=expression):
        for p in page["Partitions"]:
            day = None if day_index is None else int(p["Values"][day_index])
            found[day] = p["StorageDescriptor"]["Location"]
    return found


def register_glue_partitions(glue, partition: TradePartition, day_locations: Mapping[int | None, str],
                             database: str = DATABASE, table: CatalogTable = TRADES) -> GlueChanges:
    """Make the symbol-month's Glue partitions exactly `day_locations`: create new days, move changed
    locations, drop days that no longer have data. Idempotent. For a table partitioned by month the one
    key is None: the call creates the partition or moves its location."""
    existing = registered_glue_locations(glue, partition, database, table)
    create = [glue_partition_input(partition, d, loc, table) for d, loc in day_locations.items() if d not in existing]
    update = [glue_partition_input(partition, d, loc, table) for d, loc in day_locations.items()
              if d in existing and existing[d] != loc]
    delete = [{"Values": glue_partition_values(partition, d, table)} for d in existing if d not in day_locations]
    for batch in _batches(create, GLUE_CREATE_BATCH):
        _glue_errors(glue.batch_create_partition(DatabaseName=database, TableName=table.name,
                                                 PartitionInputList=batch), "BatchCreatePartition")
    for batch in _batches(update, GLUE_CREATE_BATCH):
        _glue_errors(glue.batch_update_partition(
            DatabaseName=database, TableName=table.name,
            Entries=[{"PartitionValueList": p["Values"], "PartitionInput": p} for p in batch]),
            "BatchUpdatePartition")
    for batch in _batches(delete, GLUE_DELETE_BATCH):
        _glue_errors(glue.batch_delete_partition(DatabaseName=database, TableName=table.name,
                                                 PartitionsToDelete=batch), "BatchDeletePartition")
    return GlueChanges(created=len(create), updated=len(update), deleted=len(delete),
                       unchanged=len(day_locations) - len(create) - len(update))
