"""Partition keys and lake layout.

Every symbol and month is validated here before it can reach a path, URL,
object key or SQL statement, and `lake_key` is the one function that builds
lake keys. Nothing else in the code base joins lake paths by hand.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from enum import Enum

SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{2,20}")
MONTH_PATTERN = re.compile(r"(\d{4})-(\d{2})")
# A materialisation's own prefix inside a partition: UTC start time (microseconds), then 8 random hex digits.
# Fixed width, so the lexical order of run ids is their start order.
RUN_ID_PATTERN = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{8}")
# Binance's spot archive starts in 2017; nothing earlier can exist.
EARLIEST_MONTH = "2017-01"


class UpstreamMissing(RuntimeError):
    """What a stage reads for a partition is not in the lake yet: materialise the upstream asset first."""


class InvalidPartitionKey(ValueError):
    """A symbol or month that must not reach a path, key or query."""


def validate_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
        raise InvalidPartitionKey(
            f"invalid symbol {symbol!r}: expected 2-20 upper-case letters or digits, e.g. BTCUSDT"
        )
    return symbol


def validate_month(month: str, *, today: dt.date | None = None) -> str:
    """Accept `YYYY-MM` between Binance's first month and the current month."""
    match = MONTH_PATTERN.fullmatch(month) if isinstance(month, str) else None
    if not match:
        raise InvalidPartitionKey(f"invalid month {month!r}: expected YYYY-MM, e.g. 2025-07")
    year, mon = int(match.group(1)), int(match.group(2))
    if not 1 <= mon <= 12:
        raise InvalidPartitionKey(f"invalid month {month!r}: month must be 01-12")
    today = today or dt.datetime.now(dt.timezone.utc).date()
    if month < EARLIEST_MONTH or (year, mon) > (today.year, today.month):
        raise InvalidPartitionKey(
            f"month {month!r} out of range: Binance archives run from {EARLIEST_MONTH} to the current month"
        )
    return month


def parse_symbols(text: str) -> tuple[str, ...]:
    """Parse a comma-separated symbol list (the MARKET_ETL_SYMBOLS format)."""
    symbols = tuple(s.strip() for s in text.split(",") if s.strip())
    if not symbols:
        raise InvalidPartitionKey("no symbols configured: set MARKET_ETL_SYMBOLS, e.g. BTCUSDT,ETHUSDT")
    for s in symbols:
        validate_symbol(s)
    if len(set(symbols)) != len(symbols):
        raise InvalidPartitionKey(f"duplicate symbols in {text!r}")
    return symbols


@dataclass(frozen=True)
class TradePartition:
    """One symbol x month of trades: the unit of work and of idempotency."""

    symbol: str
    month: str  # YYYY-MM

    def __post_init__(self) -> None:
        validate_symbol(self.symbol)
        validate_month(self.month)

    @property
    def year(self) -> int:
        return int(self.month[:4])

    @property
    def month_number(self) -> int:
        return int(self.month[5:7])

    @property
    def first_day(self) -> dt.date:
        return dt.date(self.year, self.month_number, 1)

    @property
    def next_month_first_day(self) -> dt.date:
        y, m = (self.year + 1, 1) if self.month_number == 12 else (self.year, self.month_number + 1)
        return dt.date(y, m, 1)

    @classmethod
    def from_dagster_key(cls, key: str) -> "TradePartition":
        """Parse a multi-partition key `2025-07-01|BTCUSDT` (month dimension first: dimensions sort by name)."""
        month_part, sep, symbol = key.partition("|")
        if not sep or not re.fullmatch(r"\d{4}-\d{2}-01", month_part):
            raise InvalidPartitionKey(f"invalid partition key {key!r}: expected 'YYYY-MM-01|SYMBOL'")
        return cls(symbol=symbol, month=month_part[:7])

    def dagster_key(self) -> str:
        return f"{self.month}-01|{self.symbol}"

    def __str__(self) -> str:
        return f"{self.symbol}/{self.month}"


class Zone(str, Enum):
    RAW = "raw"
    RAW_UNZIPPED = "raw_unzipped"
    PROCESSED = "processed"
    REJECTED = "rejected"
    ANALYTICS = "analytics"
    CATALOG = "catalog"
    TEMP = "temp"  # an engine's scratch output before it moves files to their staged keys; expires by lifecycle rule


def archive_stem(partition: TradePartition) -> str:
    """Binance's file stem for a monthly trades archive: `BTCUSDT-trades-2025-07`."""
    return f"{partition.symbol}-trades-{partition.month}"


def new_run_id(now: dt.datetime | None = None) -> str:
    """A fresh run id (RUN_ID_PATTERN): later runs sort after earlier ones, concurrent ones never collide."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now.astimezone(dt.timezone.utc):%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}"


def staged_trades_file_key(partition: TradePartition, day: int, run: str, part: int = 0) -> str:
    """One data file a run writes for `trades_binance` (write-audit-publish: written, not yet committed).

    processed/trades/year=Y/month=M/day=D/symbol=S/<run>-part-NNNNN.snappy.parquet: inside the table's
    data directory, browsable by day, unique to the run, so two runs of one partition never touch each
    other's files. Readers see it only once a commit of the table adds it.
    """
    return f"{lake_key(Zone.PROCESSED, partition, day=day)}/{_run_file(run, part)}"


def staged_rejected_file_key(partition: TradePartition, run: str, part: int = 0) -> str:
    """One quarantine file a run writes: rejected/trades/symbol=S/month=YYYY-MM/<run>-part-NNNNN.snappy.parquet."""
    return f"{lake_key(Zone.REJECTED, partition)}/{_run_file(run, part)}"


def staged_manifest_key(partition: TradePartition, run: str) -> str:
    """What a run wrote and what its audit found (files, counts, source digest, check outcomes):
    processed/_staged/trades/symbol=S/month=YYYY-MM/<run>.json. The publish step commits from it."""
    return f"processed/_staged/trades/symbol={partition.symbol}/month={partition.month}/{_validated_run(run)}.json"


def staged_scratch_prefix(partition: TradePartition, run: str) -> str:
    """Where a run's engine may write before moving files to their staged keys: temp/trades/symbol=S/month=M/<run>.

    Unique to the run (concurrent runs never clear each other's), outside every table's directory, and
    in the temp zone that a lifecycle rule expires (a killed run's leftovers go by themselves).
    """
    return f"{lake_key(Zone.TEMP, partition)}/{_validated_run(run)}"


def _validated_run(run: str) -> str:
    if not RUN_ID_PATTERN.fullmatch(run):
        raise InvalidPartitionKey(f"invalid run id {run!r}: expected {RUN_ID_PATTERN.pattern} (new_run_id())")
    return run


def _run_file(run: str, part: int) -> str:
    if not 0 <= part < 100_000:
        raise ValueError(f"part number {part} out of range")
    return f"{_validated_run(run)}-part-{part:05d}.snappy.parquet"


def lake_key(zone: Zone, partition: TradePartition | None = None, *, day: int | None = None,
             dataset: str = "trades", run: str | None = None) -> str:
    """The one place that builds lake keys (relative to the lake root, `/`-separated).

    raw          raw/binance/spot/trades/symbol=S/month=YYYY-MM/S-trades-YYYY-MM.zip
    raw_unzipped raw_unzipped/binance/spot/trades/symbol=S/month=YYYY-MM/S-trades-YYYY-MM.csv
    processed    processed/trades[/year=Y/month=M[/day=D/symbol=S]]
    rejected     rejected/trades[/symbol=S/month=YYYY-MM]
    analytics    analytics/<dataset>[/year=Y/month=M/symbol=S[/run-<run id>]]
    catalog      catalog/<dataset>
    temp         temp/<dataset>[/symbol=S/month=YYYY-MM]
    Keys for a partition are derived only from validated partition fields. `run` (analytics only) names
    one materialisation's own prefix (new_run_id): Athena's UNLOAD writes only into an empty location.
    """
    if partition is not None and not isinstance(partition, TradePartition):
        raise TypeError("lake_key needs a TradePartition, which validates symbol and month")
    if not re.fullmatch(r"[a-z0-9_]{1,64}", dataset):
        raise InvalidPartitionKey(f"invalid dataset name {dataset!r}")
    if run is not None and (zone is not Zone.ANALYTICS or partition is None):
        raise ValueError("a run prefix exists only inside an analytics partition")
    if run is not None and not RUN_ID_PATTERN.fullmatch(run):
        raise InvalidPartitionKey(f"invalid run id {run!r}: expected {RUN_ID_PATTERN.pattern} (new_run_id())")
    p = partition
    if zone in (Zone.RAW, Zone.RAW_UNZIPPED):
        if p is None:
            return f"{zone.value}/binance/spot/trades"
        ext = "zip" if zone is Zone.RAW else "csv"
        return f"{zone.value}/binance/spot/trades/symbol={p.symbol}/month={p.month}/{archive_stem(p)}.{ext}"
    if zone is Zone.PROCESSED:
        base = f"processed/{dataset}"
        if p is None:
            return base
        month_dir = f"{base}/year={p.year}/month={p.month_number}"
        if day is None:
            return month_dir
        if not 1 <= day <= 31:
            raise InvalidPartitionKey(f"invalid day {day!r}")
        return f"{month_dir}/day={day}/symbol={p.symbol}"
    if zone is Zone.REJECTED:
        base = f"rejected/{dataset}"
        return base if p is None else f"{base}/symbol={p.symbol}/month={p.month}"
    if zone is Zone.ANALYTICS:
        base = f"analytics/{dataset}"
        if p is None:
            return base
        partition_dir = f"{base}/year={p.year}/month={p.month_number}/symbol={p.symbol}"
        return partition_dir if run is None else f"{partition_dir}/run-{run}"
    if zone is Zone.CATALOG:
        return f"catalog/{dataset}"
    if zone is Zone.TEMP:
        base = f"temp/{dataset}"
        return base if p is None else f"{base}/symbol={p.symbol}/month={p.month}"
    raise ValueError(f"unknown zone {zone!r}")
