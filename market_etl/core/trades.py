"""Binance spot trades, from CSV text to the processed schema: the constants, the rules, the Spark transforms.

The stage entry point (`market_etl.stages.etl`) only reads, calls these, writes and reports. Every
function taking a DataFrame returns one and triggers no Spark action, so the tests run them on small
in-memory frames with the session they share.

Parsing works on the raw text lines (`spark.read.text`): one pass, the original line kept for the
quarantine, and no CSV parser (Spark's is ~2x slower than splitting these simple lines). Rows go
through `RULES` in order; the first rule a row breaks names its `rule` and `reason`, every other row
is valid. The same list drives the quarantine, the counts in the metadata and the asset checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F
from pyspark.sql import types as T

from market_etl.core.tables import TRADES_COLUMNS, TRADES_PARTITION_KEYS
from market_etl.core.keys import TradePartition

# ---------------------------------------------------------------- schemas

#: The spot trades CSV, in file order (docs/binance-files.md); also the header names when a file has one.
SOURCE_COLUMNS: tuple[str, ...] = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match")
#: The source fields as the transforms first see them: text, split from the line, nothing converted yet.
SOURCE_SCHEMA = T.StructType([T.StructField(name, T.StringType(), True) for name in SOURCE_COLUMNS])

#: The processed Parquet columns (Athena/Glue type names) and the Hive partition columns in path order
#: (processed/trades/year=2025/month=7/day=15/symbol=BTCUSDT/): declared once, with the catalog, where
#: Terraform and the SQL DDL are checked against them. TRADES_SCHEMA below is their Spark form.
PARTITION_COLUMNS = TRADES_PARTITION_KEYS
#: Binance writes 8 decimals; decimal(18,8) and decimal(28,8) keep every source digit (no float rounding).
SCALE = 8
PRICE_TYPE = T.DecimalType(18, SCALE)
QUANTITY_TYPE = T.DecimalType(28, SCALE)
TRADES_SCHEMA = T.StructType([
    T.StructField("trade_id", T.LongType()),
    T.StructField("price", PRICE_TYPE),
    T.StructField("quantity", QUANTITY_TYPE),
    T.StructField("quote_qty", QUANTITY_TYPE),
    T.StructField("trade_time", T.TimestampType()),
    T.StructField("is_buyer_maker", T.BooleanType()),
    T.StructField("is_best_match", T.BooleanType()),
])
PARTITION_SCHEMA = T.StructType([
    T.StructField("year", T.IntegerType()),
    T.StructField("month", T.IntegerType()),
    T.StructField("day", T.IntegerType()),
    T.StructField("symbol", T.StringType()),
])
#: What the stage writes: the data columns, then the partition columns (Spark moves these into the path).
PROCESSED_SCHEMA = T.StructType(TRADES_SCHEMA.fields + PARTITION_SCHEMA.fields)
#: Quarantined rows: the original text, which rule it broke and that rule's reason code.
REJECTED_SCHEMA = T.StructType([
    T.StructField("line", T.StringType()),
    T.StructField("reason", T.StringType()),
    T.StructField("rule", T.StringType()),
])
#: The quarantine table's files (core.tables.TRADES_REJECTED): the rejected rows plus symbol, month and run.
QUARANTINE_SCHEMA = T.StructType(REJECTED_SCHEMA.fields + [
    T.StructField("symbol", T.StringType()),
    T.StructField("month", T.StringType()),
    T.StructField("run", T.StringType()),
])

#: Epoch digits per time unit: spot files are milliseconds until 2024-12-31, microseconds after.
TIME_UNIT_DIGITS = {"ms": 13, "us": 16}
MICROS_PER_DAY = 86_400_000_000


class SchemaDrift(ValueError):
    """The file's columns are not Binance's seven spot trade columns."""


class SourceError(ValueError):
    """The file as a whole cannot be processed (mixed time units, conflicting duplicates); nothing is written."""


# ---------------------------------------------------------------- the file's layout, from its first line


@dataclass(frozen=True)
class SourceLayout:
    """What the first line says about a file: whether it is a header (then it is skipped)."""

    header: str | None  # the header line exactly as written, or None for headerless files


def source_layout(first_line: str) -> SourceLayout:
    """Detect a header and check the column count; raises SchemaDrift naming the missing or extra column.

    A header is a first line whose first field is not a number (spot files have none, futures files
    gained one in 2022). Without a header only the count can drift; columns are named by position.
    """
    line = first_line.rstrip("\r\n")
    fields = line.split(",")
    is_header = not fields[0].strip().isdigit()
    if is_header:
        names = [f.strip().lower() for f in fields]
        missing = [c for c in SOURCE_COLUMNS if c not in names]
        extra = [n for n in names if n not in SOURCE_COLUMNS]
        if missing or extra:
            raise SchemaDrift(
                "header does not match Binance's spot trade columns "
                f"({', '.join(SOURCE_COLUMNS)}): "
                + "; ".join(filter(None, [
                    f"missing column(s) {', '.join(missing)}" if missing else "",
                    f"unexpected column(s) {', '.join(extra)}" if extra else "",
                ]))
            )
        if names != list(SOURCE_COLUMNS):
            raise SchemaDrift(f"header columns out of order: {', '.join(names)}; expected {', '.join(SOURCE_COLUMNS)}")
        return SourceLayout(header=line)
    if len(fields) < len(SOURCE_COLUMNS):
        absent = SOURCE_COLUMNS[len(fields):]
        raise SchemaDrift(
            f"first line has {len(fields)} columns, expected {len(SOURCE_COLUMNS)}: column(s) "
            f"{', '.join(absent)} missing (headerless file, columns named by position): {line[:200]!r}"
        )
    if len(fields) > len(SOURCE_COLUMNS):
        raise SchemaDrift(
            f"first line has {len(fields)} columns, expected {len(SOURCE_COLUMNS)}: unexpected column "
            f"{len(SOURCE_COLUMNS) + 1} (value {fields[len(SOURCE_COLUMNS)]!r}) after {SOURCE_COLUMNS[-1]}: "
            f"{line[:200]!r}"
        )
    return SourceLayout(header=None)


# ---------------------------------------------------------------- parsing


def split_fields(lines: DataFrame, layout: SourceLayout) -> DataFrame:
    """Text lines (`value`) -> `line`, `n_fields` and the seven source fields as text (SOURCE_SCHEMA)."""
    if layout.header is not None:
        lines = lines.where(F.col("value") != F.lit(layout.header))
    parts = F.split(F.col("value"), ",")
    return lines.select(
        F.col("value").alias("line"),
        F.size(parts).alias("n_fields"),
        *[parts[i].alias(name) for i, name in enumerate(SOURCE_COLUMNS)],
    )


def parse_decimal(text: Column, data_type: T.DecimalType) -> Column:
    """The exact decimal value of `text`, or null when it is not a plain decimal with at most 8 places.

    Spark's cast to decimal rounds extra places and accepts exponents, so it only runs on text known
    to be plain: at most 8 places after the dot (and a digit after it), nothing but digits around one
    dot. That last test is a cast to long, which parses [sign]digits[.digits] without creating
    anything; only values beyond a long's range, which Binance never writes, pay for the pattern.
    Like both casts, it ignores whitespace around the value. Measured on 10M rows: 40% less CPU than
    building the unscaled long from substrings, as cheap as a bare cast; checking the first and last
    characters explicitly would add a quarter.
    """
    size = F.octet_length(text)  # bytes: O(1), where length() counts UTF-8 characters
    dot = F.instr(text, ".")
    places = (dot == 0) | ((size > dot) & (size - dot <= SCALE))
    whole_digits = data_type.precision - data_type.scale
    plain = text.rlike(rf"^[+-]?[0-9]{{1,{whole_digits}}}(\.[0-9]{{1,{SCALE}}})?$")
    digits = F.when(text.cast(T.LongType()).isNotNull(), F.lit(True)).otherwise(plain)
    return F.when(places & digits, text.cast(data_type))


def parse_fields(fields: DataFrame) -> DataFrame:
    """Source text fields -> typed values (null where a field does not parse), the text kept for the rules.

    Times are converted by their own digit count (13: ms, 16: us); `time_digits` lets the stage prove
    that a file uses one unit only. Booleans accept True/False and true/false.
    """
    time_digits = F.octet_length(F.col("time"))
    time_value = F.col("time").cast(T.LongType())
    return fields.select(
        "line", "n_fields", "price", "qty", "time", "is_buyer_maker", "is_best_match",
        F.col("id").cast(T.LongType()).alias("trade_id"),
        parse_decimal(F.col("price"), PRICE_TYPE).alias("price_value"),
        parse_decimal(F.col("qty"), QUANTITY_TYPE).alias("quantity"),
        parse_decimal(F.col("quote_qty"), QUANTITY_TYPE).alias("quote_qty_value"),
        time_digits.alias("time_digits"),
        F.when(time_digits == TIME_UNIT_DIGITS["us"], time_value)
         .when(time_digits == TIME_UNIT_DIGITS["ms"], time_value * 1000).alias("time_us"),
        _parse_bool(F.col("is_buyer_maker")).alias("buyer_maker_value"),
        _parse_bool(F.col("is_best_match")).alias("best_match_value"),
    )


def _parse_bool(text: Column) -> Column:
    return F.when(text.isin("True", "true"), F.lit(True)).when(text.isin("False", "false"), F.lit(False))


# ---------------------------------------------------------------- validation rules


@dataclass(frozen=True)
class MonthBounds:
    """The partition's month as epoch microseconds [start, end): what a valid trade time falls in."""

    start_us: int
    end_us: int

    @classmethod
    def of(cls, partition: TradePartition) -> "MonthBounds":
        import calendar

        start = calendar.timegm(partition.first_day.timetuple()) * 1_000_000
        end = calendar.timegm(partition.next_month_first_day.timetuple()) * 1_000_000
        return cls(start, end)


@dataclass(frozen=True)
class Rule:
    """One validation rule: rows breaking it are quarantined with `reason`; `check` reports them."""

    name: str
    reason: str
    check: str
    description: str
    broken: Callable[[MonthBounds], Column]  # true for a row that breaks the rule (earlier rules passed)


def _empty(name: str) -> Column:
    return F.octet_length(F.col(name)) == 0  # blank or padded values fail the decimal rule instead


RULES: tuple[Rule, ...] = (
    Rule("seven_fields", "malformed_line", "well_formed_rows",
         "The line has exactly seven comma-separated fields.",
         lambda m: F.col("n_fields") != len(SOURCE_COLUMNS)),
    Rule("trade_id_integer", "trade_id_invalid", "well_formed_rows",
         "The trade id is a positive integer.",
         lambda m: F.col("trade_id").isNull() | (F.col("trade_id") <= 0)),
    Rule("flags_boolean", "flag_invalid", "well_formed_rows",
         "is_buyer_maker and is_best_match are True/False (any case Binance uses).",
         lambda m: F.col("buyer_maker_value").isNull() | F.col("best_match_value").isNull()),
    Rule("quote_qty_decimal", "quote_qty_invalid", "well_formed_rows",
         "quote_qty is a decimal with at most 8 places.",
         lambda m: F.col("quote_qty_value").isNull()),
    Rule("trade_time_epoch", "trade_time_invalid", "valid_trade_dates",
         "The time is an epoch in milliseconds (13 digits) or microseconds (16 digits).",
         lambda m: F.col("time_us").isNull()),
    Rule("trade_time_in_month", "trade_time_outside_month", "valid_trade_dates",
         "The trade time falls inside the partition's month (UTC).",
         lambda m: (F.col("time_us") < m.start_us) | (F.col("time_us") >= m.end_us)),
    Rule("price_present", "price_missing", "positive_prices",
         "The price field is not empty.",
         lambda m: _empty("price")),
    Rule("price_decimal", "price_unparsable", "positive_prices",
         "The price is a decimal with at most 8 places and at most 10 whole digits.",
         lambda m: F.col("price_value").isNull()),
    Rule("price_positive", "price_not_positive", "positive_prices",
         "The price is greater than zero.",
         lambda m: F.col("price_value") <= 0),
    Rule("quantity_present", "quantity_missing", "positive_quantities",
         "The quantity field is not empty.",
         lambda m: _empty("qty")),
    Rule("quantity_decimal", "quantity_unparsable", "positive_quantities",
         "The quantity is a decimal with at most 8 places and at most 20 whole digits.",
         lambda m: F.col("quantity").isNull()),
    Rule("quantity_positive", "quantity_not_positive", "positive_quantities",
         "The quantity is greater than zero.",
         lambda m: F.col("quantity") <= 0),
)


def rules_of_check(check: str) -> tuple[Rule, ...]:
    return tuple(rule for rule in RULES if rule.check == check)


def apply_rules(parsed: DataFrame, partition: TradePartition, observation: Observation | None = None,
                rules: Sequence[Rule] = RULES) -> DataFrame:
    """Adds `rule`: the name of the first rule the row breaks (in `rules` order), null for a valid row.

    The frame is observed (`metric_columns` land in `observation` during the first action that reads
    it: the write). The observation also stops Spark from pushing the later `rule IS NULL` filter
    below the parsing, which would inline every parse expression into the filter and parse each field
    a dozen times per row (measured: 10x slower).
    """
    bounds = MonthBounds.of(partition)
    broken = F.when(rules[0].broken(bounds), F.lit(rules[0].name))
    for rule in rules[1:]:
        broken = broken.when(rule.broken(bounds), F.lit(rule.name))
    return parsed.withColumn("rule", broken).observe(observation or Observation(), *metric_columns())


def valid_trades(checked: DataFrame) -> DataFrame:
    """The rows that broke no rule, in the processed schema (TRADES_SCHEMA)."""
    return checked.where(F.col("rule").isNull()).select(
        F.col("trade_id"),
        F.col("price_value").alias("price"),
        F.col("quantity"),
        F.col("quote_qty_value").alias("quote_qty"),
        F.timestamp_micros(F.col("time_us")).alias("trade_time"),
        F.col("buyer_maker_value").alias("is_buyer_maker"),
        F.col("best_match_value").alias("is_best_match"),
    )


def with_partition_columns(trades: DataFrame, partition: TradePartition) -> DataFrame:
    """Adds year, month, day and symbol (PROCESSED_SCHEMA), what Spark's partitionBy turns into the path.

    year and month are the partition's (every valid time is inside it); the day comes from the epoch
    microseconds directly (UTC by definition, no time zone lookup per row). Added after the sort, so
    the sorted rows carry four columns fewer.
    """
    start_us = MonthBounds.of(partition).start_us
    return trades.select(
        *[name for name, _ in TRADES_COLUMNS],
        F.lit(partition.year).cast(T.IntegerType()).alias("year"),
        F.lit(partition.month_number).cast(T.IntegerType()).alias("month"),
        (F.expr(f"(unix_micros(trade_time) - {start_us}) div {MICROS_PER_DAY}") + 1).cast(T.IntegerType())
        .alias("day"),
        F.lit(partition.symbol).alias("symbol"),
    )


def rejected_rows(checked: DataFrame, rules: Sequence[Rule] = RULES) -> DataFrame:
    """The quarantine: every row that broke a rule, with the original line (REJECTED_SCHEMA)."""
    reason = F.create_map(*[F.lit(x) for rule in rules for x in (rule.name, rule.reason)])
    return checked.where(F.col("rule").isNotNull()).select("line", reason[F.col("rule")].alias("reason"), "rule")


def quarantine_rows(checked: DataFrame, partition: TradePartition, run: str) -> DataFrame:
    """The rejected rows as the quarantine table stores them (QUARANTINE_SCHEMA): which partition, which run."""
    return rejected_rows(checked).select("line", "reason", "rule", F.lit(partition.symbol).alias("symbol"),
                                         F.lit(partition.month).alias("month"), F.lit(run).alias("run"))


def sorted_within_days(trades: DataFrame) -> DataFrame:
    """Each task's rows in trade-time order (id breaks ties): every day file is sorted, so readers prune
    row groups by trade_time statistics. A local sort, no shuffle; ~linear when the input is in order."""
    return trades.sortWithinPartitions("trade_time", "trade_id")




def metric_columns() -> tuple[Column, ...]:
    """What the stage counts while it writes (`DataFrame.observe`, no extra pass).

    Kept to four aggregates: each costs per row (16 of them measured ~6% of the run); the counts per
    rule come from the quarantine as written.
    """
    valid_time_digits = F.when(F.col("time_us").isNotNull(), F.col("time_digits"))
    return (
        F.count(F.lit(1)).alias("rows_in"),
        F.count("rule").alias("rows_rejected"),
        F.min(valid_time_digits).alias("min_time_digits"),
        F.max(valid_time_digits).alias("max_time_digits"),
    )


def time_unit_of(metrics: dict) -> str | None:
    """The file's time unit from the observed digit counts; SourceError when it mixes units."""
    units = {digits: unit for unit, digits in TIME_UNIT_DIGITS.items()}
    low, high = metrics.get("min_time_digits"), metrics.get("max_time_digits")
    if low != high:
        raise SourceError(
            f"mixed time units in one file: both {units[low]} ({low}-digit) and {units[high]} ({high}-digit) "
            "epochs; Binance files use one unit each, so the file is corrupt: nothing was written"
        )
    return units.get(low)


# ---------------------------------------------------------------- duplicates


def duplicated_ids(trades: DataFrame) -> DataFrame:
    """Trade ids present more than once: `copies` rows, `variants` distinct value sets (>1: a conflict)."""
    values = [name for name, _ in TRADES_COLUMNS if name != "trade_id"]
    return (trades.groupBy("trade_id")
            .agg(F.count(F.lit(1)).alias("copies"), F.count_distinct(F.struct(*values)).alias("variants"))
            .where(F.col("copies") > 1))


def drop_exact_duplicates(trades: DataFrame) -> DataFrame:
    """One row per trade id; only correct once `duplicated_ids` found no id with two value sets."""
    return trades.dropDuplicates(["trade_id"])


# ---------------------------------------------------------------- trade id layout: duplicates and gaps without a shuffle


def id_segments(trades: DataFrame) -> DataFrame:
    """Runs of consecutive ids in row order, as (n, first_id, last_id) per run.

    Within a Spark partition `trade_id - monotonically_increasing_id()` stays constant along a run of
    consecutive ids; grouping by it yields one small row per run. For files already in id order (the
    normal case) that is a handful of rows per file plus one per upstream gap, computed in one narrow
    pass with a map-side aggregation: no sort or shuffle of the trades.
    """
    offset = F.col("trade_id") - F.monotonically_increasing_id()
    return (trades.select(F.spark_partition_id().alias("task"), offset.alias("offset"), "trade_id")
            .groupBy("task", "offset")
            .agg(F.count(F.lit(1)).alias("n"), F.min("trade_id").alias("first_id"),
                 F.max("trade_id").alias("last_id")))


def ids_in_order(trades: DataFrame) -> DataFrame:
    """Just the ids, range-partitioned and sorted: the fallback input for `id_segments` when the rows'
    own order is not id order (each run is then a real run of consecutive ids)."""
    return trades.select("trade_id").repartitionByRange("trade_id").sortWithinPartitions("trade_id")


@dataclass(frozen=True)
class Gap:
    after_id: int  # the last id before the gap
    next_id: int  # the first id after it

    @property
    def missing(self) -> int:
        return self.next_id - self.after_id - 1


@dataclass(frozen=True)
class IdLayout:
    """Uniqueness and continuity of a set of trade ids, from its runs."""

    rows: int
    first_id: int | None
    last_id: int | None
    unique: bool  # no id twice
    gaps: tuple[Gap, ...]  # in id order; meaningful only when unique

    @property
    def missing_ids(self) -> int:
        return sum(g.missing for g in self.gaps)


def analyse_segments(segments: Iterable[tuple[int, int, int]], *, ids_sorted: bool = False) -> IdLayout | None:
    """Decide uniqueness and gaps from runs (n, first_id, last_id); None when the runs cannot tell.

    A group of `id_segments` holds distinct ids (one per position). When every group is dense
    (n == last - first + 1) it covers its whole range; sorted by first id the groups are then disjoint
    exactly when the ids are unique, and the holes between them are the gaps. A group that is not
    dense merged runs that are not adjacent (rows out of id order, or a gap and a duplicate whose
    offsets cancel): undecided, unless the rows were in sorted id order (`ids_sorted`), where that
    can only come from an id repeating.
    """
    runs = sorted((first, last, n) for n, first, last in segments)
    rows = sum(n for _, _, n in runs)
    if not runs:
        return IdLayout(rows=0, first_id=None, last_id=None, unique=True, gaps=())
    first_id, last_id = runs[0][0], max(r[1] for r in runs)
    if any(n != last - first + 1 for first, last, n in runs):
        return IdLayout(rows, first_id, last_id, unique=False, gaps=()) if ids_sorted else None
    unique = all(nxt[0] > cur[1] for cur, nxt in zip(runs, runs[1:]))
    gaps = tuple(Gap(cur[1], nxt[0]) for cur, nxt in zip(runs, runs[1:]) if nxt[0] > cur[1] + 1) if unique else ()
    return IdLayout(rows=rows, first_id=first_id, last_id=last_id, unique=unique, gaps=gaps)
