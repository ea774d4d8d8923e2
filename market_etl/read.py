"""The lake in a notebook: published trades and 1-minute bars as Arrow tables, one import away.

    from market_etl.read import trades, ohlcv_1m

    btc = trades("BTCUSDT", "2025-07-01", "2025-07-31")     # pyarrow.Table, exact decimals
    bars = ohlcv_1m("BTCUSDT", "2025-07-15")                # one day
    old = trades("BTCUSDT", "2025-07-01", as_of=snapshot_id)  # what was published then

Reads go through the Iceberg tables (`market_data.trades_binance`, `market_data.ohlcv_1m`): the local
runtime's SQL catalog in the lake (`catalog/iceberg.db`), or the Glue Data Catalog and S3 on the aws
runtime, chosen by the same MARKET_ETL_* variables as everything else. Only the published snapshot (the
table's `main` history) is ever read; the date range and the symbol become an Iceberg row filter on the
identity partitions (year, month, day, symbol), so only the matching files are opened. Dates are UTC
days; both ends are included. Imports neither Dagster nor Spark.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from market_etl.core.keys import InvalidPartitionKey, validate_symbol

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

    from market_etl.settings import Settings

NAMESPACE = "market_data"
#: The local runtime's Iceberg catalog: pyiceberg's SQL catalog in a SQLite file inside the lake. The SQL
#: catalog files each table under the catalog's name, so writers and readers must use the same name.
ICEBERG_CATALOG_KEY = "catalog/iceberg.db"
ICEBERG_CATALOG_NAME = "market_etl"

__all__ = ["trades", "ohlcv_1m", "open_catalog", "ReadError", "NothingPublished", "UnknownSymbol", "EmptyRange"]


class ReadError(LookupError):
    """A read that cannot be answered as asked."""


class NothingPublished(ReadError):
    """The lake has no published version of the table (at the time asked for)."""


class UnknownSymbol(ReadError):
    """The symbol has never been published to the table."""


class EmptyRange(ReadError):
    """The date range is backwards, or the symbol has no published rows in it."""


@dataclass(frozen=True)
class LakeTable:
    name: str
    time_column: str  # bounds the range exactly when the table has no `day` partition


TABLES = {"trades_binance": LakeTable("trades_binance", "trade_time"), "ohlcv_1m": LakeTable("ohlcv_1m", "bar_time")}


def open_catalog(settings: "Settings | None" = None) -> "Catalog":
    """The runtime's Iceberg catalog: SQLite in the local lake, or Glue (credentials and region from the
    usual AWS variables; AWS_ENDPOINT_URL_GLUE and MARKET_ETL_S3_ENDPOINT_URL point at other endpoints)."""
    from market_etl.settings import Settings

    settings = settings or Settings.from_env()
    if settings.runtime == "local":
        from pyiceberg.catalog.sql import SqlCatalog

        database = Path(settings.lake) / ICEBERG_CATALOG_KEY
        if not database.is_file():
            raise NothingPublished(f"nothing published in the lake at {settings.lake}: no Iceberg catalog at "
                                   f"{database}. Materialise the pipeline's tables first (e.g. `make demo`), or "
                                   "set MARKET_ETL_LAKE to the lake to read")
        return SqlCatalog(ICEBERG_CATALOG_NAME, uri=f"sqlite:///{database}", warehouse=Path(settings.lake).as_uri(),
                          init_catalog_tables="false")
    from pyiceberg.catalog.glue import GlueCatalog

    properties = {"glue.region": settings.aws_region, "s3.region": settings.aws_region,
                  "s3.endpoint": settings.s3_endpoint_url}
    return GlueCatalog(ICEBERG_CATALOG_NAME, **{k: v for k, v in properties.items() if v})


def trades(symbol: str, start, end=None, *, as_of=None, catalog: "Catalog | None" = None) -> "pa.Table":
    """Published trades of `symbol` from UTC day `start` to day `end` (inclusive; default: `start` only).

    `start`/`end`: `date`, `datetime` or `"YYYY-MM-DD"`. `as_of`: a snapshot id, or a time (`datetime`,
    ISO string) meaning what was published then. Columns: trade_id, price decimal(18,8), quantity and
    quote_qty decimal(28,8), trade_time (UTC), is_buyer_maker, is_best_match, year, month, day, symbol.
    """
    return read_table("trades_binance", symbol, start, end, as_of=as_of, catalog=catalog)


def ohlcv_1m(symbol: str, start, end=None, *, as_of=None, catalog: "Catalog | None" = None) -> "pa.Table":
    """Published 1-minute bars of `symbol` from UTC day `start` to day `end` (inclusive), as `trades` reads."""
    return read_table("ohlcv_1m", symbol, start, end, as_of=as_of, catalog=catalog)


def read_table(name: str, symbol: str, start, end=None, *, as_of=None, catalog: "Catalog | None" = None
               ) -> "pa.Table":
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        symbol = validate_symbol(symbol)
    except InvalidPartitionKey as err:
        raise UnknownSymbol(str(err)) from err
    first, last = _day(start), _day(end if end is not None else start)
    if last < first:
        raise EmptyRange(f"the range ends ({last}) before it starts ({first})")
    catalog = catalog or open_catalog()
    try:
        table = catalog.load_table(f"{NAMESPACE}.{name}")
    except (NoSuchTableError, NoSuchNamespaceError) as err:
        raise NothingPublished(f"nothing published: {NAMESPACE}.{name} does not exist in the catalog yet") from err
    snapshot_id = published_snapshot_id(table, as_of)
    row_filter = date_range_filter(TABLES[name], table, symbol, first, last)
    result = table.scan(row_filter=row_filter, snapshot_id=snapshot_id).to_arrow()
    if result.num_rows == 0:
        _explain_empty(table, snapshot_id, name, symbol, first, last)
    return result


def _day(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as err:
        raise EmptyRange(f"invalid date {value!r}: expected YYYY-MM-DD, a date or a datetime") from err


def published_snapshot_id(table: "Table", as_of=None) -> int:
    """The snapshot to read: the table's current published one, or the published one at `as_of`.

    Published means in the history of the `main` branch: a snapshot staged for audit (on another branch,
    or never made current) is refused even when asked for by id.
    """
    from pyiceberg.table.snapshots import ancestors_of

    current = table.current_snapshot()
    if current is None:
        raise NothingPublished(f"nothing published: {table.name()} has no snapshot yet")
    if as_of is None:
        return current.snapshot_id
    published = {s.snapshot_id: s for s in ancestors_of(current, table.metadata)}
    if isinstance(as_of, int) and not isinstance(as_of, bool):
        if as_of not in published:
            raise NothingPublished(f"snapshot {as_of} is not a published snapshot of {'.'.join(table.name())}; "
                                   f"published: {sorted(published)}")
        return as_of
    moment = as_of if isinstance(as_of, dt.datetime) else dt.datetime.fromisoformat(str(as_of))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    snapshot = table.snapshot_as_of_timestamp(int(moment.timestamp() * 1000))
    if snapshot is None or snapshot.snapshot_id not in published:
        raise NothingPublished(f"nothing of {'.'.join(table.name())} was published at or before {moment.isoformat()}")
    return snapshot.snapshot_id


def _months(first: dt.date, last: dt.date):
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def date_range_filter(spec: LakeTable, table: "Table", symbol: str, first: dt.date, last: dt.date):
    """symbol = S AND ((year = Y AND month = M [AND day BETWEEN a AND b]) OR ...): identity partitions, so
    Iceberg prunes manifests and files from it. Without a `day` column, the time column bounds the days."""
    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan, LessThanOrEqual, Or
    from pyiceberg.types import TimestamptzType

    columns = {f.name for f in table.schema().fields}
    months = []
    for year, month in _months(first, last):
        condition = And(EqualTo("year", year), EqualTo("month", month))
        if "day" in columns:
            if (year, month) == (first.year, first.month) and first.day > 1:
                condition = And(condition, GreaterThanOrEqual("day", first.day))
            if (year, month) == (last.year, last.month):
                condition = And(condition, LessThanOrEqual("day", last.day))
        months.append(condition)
    row_filter = And(EqualTo("symbol", symbol), months[0] if len(months) == 1 else Or(*months))
    if "day" not in columns:
        with_zone = isinstance(table.schema().find_field(spec.time_column).field_type, TimestamptzType)
        suffix = "+00:00" if with_zone else ""
        after = (last + dt.timedelta(days=1)).isoformat()
        row_filter = And(row_filter, GreaterThanOrEqual(spec.time_column, f"{first.isoformat()}T00:00:00{suffix}"),
                         LessThan(spec.time_column, f"{after}T00:00:00{suffix}"))
    return row_filter


def _explain_empty(table: "Table", snapshot_id: int, name: str, symbol: str, first: dt.date, last: dt.date):
    """No rows: say whether the symbol is unknown or the range holds nothing, and what there is."""
    partitions = table.inspect.partitions(snapshot_id=snapshot_id).column("partition").to_pylist()
    symbols = sorted({p["symbol"] for p in partitions})
    if symbol not in symbols:
        raise UnknownSymbol(f"{symbol} has nothing published in {NAMESPACE}.{name}; symbols there: "
                            f"{', '.join(symbols) or 'none'}")
    months = sorted({(p["year"], p["month"]) for p in partitions if p["symbol"] == symbol})
    raise EmptyRange(f"{symbol} has no published rows in {NAMESPACE}.{name} from {first} to {last}; published "
                     f"months for it: {', '.join(f'{y:04d}-{m:02d}' for y, m in months)}")
