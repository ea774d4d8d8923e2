"""The lake's tables, declared once: name, columns with their types, identity partition fields, location.

Everything else derives from these declarations: the Iceberg schemas and partition specs
(`market_etl.lake.iceberg`), the Glue tables Athena reads, the DuckDB views of the local runtime,
the Spark schema of the files the ETL writes, and the HCL consistency tests. Pure data: no pyiceberg,
no Dagster, no I/O.

Types are spelled as Athena's Hive DDL (and Spark's simpleString) spell them. A table whose timestamps
are instants (`utc_timestamps`: Parquet TIMESTAMP_MICROS adjusted to UTC, what the ETL writes) gets
Iceberg `timestamptz` columns; otherwise `timestamp` (wall-clock, as the analytics SQL produces).
Every column is optional in the Iceberg schema: Spark and DuckDB write every Parquet column as
optional, and Iceberg refuses to add a file whose column is optional to a table where it is required.
"""
from __future__ import annotations

from dataclasses import dataclass

from market_etl.core.keys import Zone, lake_key

DATABASE = "market_data"

# The processed trades: what the ETL writes (market_etl.core.trades) and what the sample queries read.
TRADES_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trade_id", "bigint"),
    ("price", "decimal(18,8)"),
    ("quantity", "decimal(28,8)"),
    ("quote_qty", "decimal(28,8)"),
    ("trade_time", "timestamp"),  # UTC instants (TableSpec.utc_timestamps)
    ("is_buyer_maker", "boolean"),
    ("is_best_match", "boolean"),
)
# Inside every data file too, constant per file: the catalog takes a file's partition from its statistics.
TRADES_PARTITION_KEYS: tuple[tuple[str, str], ...] = (("year", "int"), ("month", "int"), ("day", "int"),
                                                      ("symbol", "string"))

# What the analytics queries (sql/athena_analytics.sql) return, typed as Athena types them: SUM of a
# decimal(p,8) is decimal(38,8), MIN/MAX/min_by keep the column's type, COUNT is bigint.
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
MONTH_PARTITION_KEYS: tuple[tuple[str, str], ...] = (("year", "int"), ("month", "int"), ("symbol", "string"))

# The quarantine: each rejected source line, why, which rule, and the run that read it.
REJECTED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("line", "string"),
    ("reason", "string"),
    ("rule", "string"),
)
REJECTED_PARTITION_KEYS: tuple[tuple[str, str], ...] = (("symbol", "string"), ("month", "string"),
                                                        ("run", "string"))


@dataclass(frozen=True)
class TableSpec:
    """One table: data columns, then the partition columns (also stored in every file), all in file order."""

    name: str
    data_columns: tuple[tuple[str, str], ...]
    partition_columns: tuple[tuple[str, str], ...]
    location_key: str  # the table's directory, relative to the lake root: data files and metadata/ below it
    partition_by: tuple[str, ...] | None = None  # identity partition fields; default: every partition column
    utc_timestamps: bool = False  # timestamp columns are UTC instants (Iceberg timestamptz)
    description: str = ""

    @property
    def columns(self) -> tuple[tuple[str, str], ...]:
        return self.data_columns + self.partition_columns

    @property
    def partition_fields(self) -> tuple[str, ...]:
        return self.partition_by if self.partition_by is not None else tuple(n for n, _ in self.partition_columns)

    @property
    def qualified_name(self) -> str:
        return f"{DATABASE}.{self.name}"


TRADES = TableSpec(
    name="trades_binance",
    data_columns=TRADES_COLUMNS,
    partition_columns=TRADES_PARTITION_KEYS,
    location_key=lake_key(Zone.PROCESSED),
    utc_timestamps=True,
    description="Validated Binance spot trades, one row per trade (processed/trades).",
)
TRADES_REJECTED = TableSpec(
    name="trades_rejected",
    data_columns=REJECTED_COLUMNS,
    partition_columns=REJECTED_PARTITION_KEYS,
    location_key=lake_key(Zone.REJECTED),
    # By symbol and month; `run` is a column (constant per file) saying which run quarantined the line.
    partition_by=("symbol", "month"),
    description="Source lines the ETL rejected: the line as read, the reason, the rule, and the run.",
)
OHLCV_1M = TableSpec(
    name="ohlcv_1m",
    data_columns=OHLCV_1M_COLUMNS,
    partition_columns=MONTH_PARTITION_KEYS,
    location_key=lake_key(Zone.ANALYTICS, dataset="ohlcv_1m"),
    description="1-minute bars per symbol (sql/athena_analytics.sql `ohlcv_1m`).",
)
DAILY_TRADE_STATS = TableSpec(
    name="daily_trade_stats",
    data_columns=DAILY_TRADE_STATS_COLUMNS,
    partition_columns=MONTH_PARTITION_KEYS,
    location_key=lake_key(Zone.ANALYTICS, dataset="daily_trade_stats"),
    description="Per-day trade statistics per symbol (sql/athena_analytics.sql `daily_trade_stats`).",
)
TABLES: dict[str, TableSpec] = {t.name: t for t in (TRADES, TRADES_REJECTED, OHLCV_1M, DAILY_TRADE_STATS)}
ANALYTICS_TABLES: dict[str, TableSpec] = {t.name: t for t in (OHLCV_1M, DAILY_TRADE_STATS)}


class UnknownTable(ValueError):
    pass


def table_spec(name: str) -> TableSpec:
    """A table by its name, with or without the database (`trades_binance`, `market_data.trades_binance`)."""
    short = name.split(".", 1)[1] if name.startswith(f"{DATABASE}.") else name
    if short not in TABLES:
        raise UnknownTable(f"no table {name!r}; tables: {', '.join(sorted(TABLES))}")
    return TABLES[short]
