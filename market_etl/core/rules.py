"""The validation rules of Binance spot trades, declared once for every ETL engine (no pyspark here).

Each rule is a row of `RULES`: name, reason code, the asset check it feeds, a description, and the
predicate itself, written once as a SQL expression (Spark SQL dialect) over the parsed columns every
engine produces (`PARSED_COLUMNS`). The Spark engine compiles it with `F.expr`, the DuckDB engine with
sqlglot's Spark-to-DuckDB translation (`rule_case_sql`): a rule cannot exist in one engine only, and
the parity suite (market_etl_tests/integration/test_engine_parity.py) proves both engines agree.

Rows go through `RULES` in order; the first rule a row breaks names its `rule` and `reason`, every
other row is valid. The same table drives the quarantine, the counts in the metadata and the checks.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from functools import lru_cache

from market_etl.core.keys import TradePartition

#: The spot trades CSV, in file order (docs: Binance's layout); also the header names when a file has one.
SOURCE_COLUMNS: tuple[str, ...] = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match")
#: Binance writes 8 decimals; decimal(18,8) and decimal(28,8) keep every source digit (no float rounding).
SCALE = 8
PRICE_PRECISION = 18
QUANTITY_PRECISION = 28
#: Epoch digits per time unit: spot files are milliseconds until 2024-12-31, microseconds after.
TIME_UNIT_DIGITS = {"ms": 13, "us": 16}
MICROS_PER_DAY = 86_400_000_000
#: Boolean spellings Binance uses (True/False in older files, true/false in newer ones).
TRUE_TEXTS = ("True", "true")
FALSE_TEXTS = ("False", "false")

#: What every engine's parse step produces and the predicates read: the source text fields as split
#: from the line (`price`, `qty`), the field count and the typed values (null where a field does not parse).
PARSED_COLUMNS: tuple[str, ...] = ("n_fields", "trade_id", "price", "price_value", "qty", "quantity",
                                   "quote_qty_value", "time_us", "buyer_maker_value", "best_match_value")


class SchemaDrift(ValueError):
    """The file's columns are not Binance's seven spot trade columns."""


class SourceError(ValueError):
    """The file as a whole cannot be processed (mixed time units, conflicting duplicates); nothing is written."""


@dataclass(frozen=True)
class MonthBounds:
    """The partition's month as epoch microseconds [start, end): what a valid trade time falls in."""

    start_us: int
    end_us: int

    @classmethod
    def of(cls, partition: TradePartition) -> "MonthBounds":
        start = calendar.timegm(partition.first_day.timetuple()) * 1_000_000
        end = calendar.timegm(partition.next_month_first_day.timetuple()) * 1_000_000
        return cls(start, end)


@dataclass(frozen=True)
class Rule:
    """One validation rule: rows breaking it are quarantined with `reason`; `check` reports them.

    `predicate` is Spark SQL over PARSED_COLUMNS, true for a row that breaks the rule (the earlier rules
    passed); `{start_us}` and `{end_us}` stand for the partition's MonthBounds.
    """

    name: str
    reason: str
    check: str
    description: str
    predicate: str

    def sql(self, bounds: MonthBounds) -> str:
        return self.predicate.format(start_us=bounds.start_us, end_us=bounds.end_us)


RULES: tuple[Rule, ...] = (
    Rule("seven_fields", "malformed_line", "well_formed_rows",
         "The line has exactly seven comma-separated fields.",
         f"n_fields <> {len(SOURCE_COLUMNS)}"),
    Rule("trade_id_integer", "trade_id_invalid", "well_formed_rows",
         "The trade id is a positive integer.",
         "trade_id IS NULL OR trade_id <= 0"),
    Rule("flags_boolean", "flag_invalid", "well_formed_rows",
         "is_buyer_maker and is_best_match are True/False (any case Binance uses).",
         "buyer_maker_value IS NULL OR best_match_value IS NULL"),
    Rule("quote_qty_decimal", "quote_qty_invalid", "well_formed_rows",
         "quote_qty is a decimal with at most 8 places.",
         "quote_qty_value IS NULL"),
    Rule("trade_time_epoch", "trade_time_invalid", "valid_trade_dates",
         "The time is an epoch in milliseconds (13 digits) or microseconds (16 digits).",
         "time_us IS NULL"),
    Rule("trade_time_in_month", "trade_time_outside_month", "valid_trade_dates",
         "The trade time falls inside the partition's month (UTC).",
         "time_us < {start_us} OR time_us >= {end_us}"),
    # Blank or padded values fail the decimal rule instead: "present" means not the empty string.
    Rule("price_present", "price_missing", "positive_prices",
         "The price field is not empty.",
         "price = ''"),
    Rule("price_decimal", "price_unparsable", "positive_prices",
         "The price is a decimal with at most 8 places and at most 10 whole digits.",
         "price_value IS NULL"),
    Rule("price_positive", "price_not_positive", "positive_prices",
         "The price is greater than zero.",
         "price_value <= 0"),
    Rule("quantity_present", "quantity_missing", "positive_quantities",
         "The quantity field is not empty.",
         "qty = ''"),
    Rule("quantity_decimal", "quantity_unparsable", "positive_quantities",
         "The quantity is a decimal with at most 8 places and at most 20 whole digits.",
         "quantity IS NULL"),
    Rule("quantity_positive", "quantity_not_positive", "positive_quantities",
         "The quantity is greater than zero.",
         "quantity <= 0"),
)
RULES_BY_NAME = {rule.name: rule for rule in RULES}
REASONS = {rule.name: rule.reason for rule in RULES}


def rules_of_check(check: str) -> tuple[Rule, ...]:
    return tuple(rule for rule in RULES if rule.check == check)


def rule_case_sql(bounds: MonthBounds, rules: tuple[Rule, ...] = RULES) -> str:
    """`CASE WHEN <rule 1 broken> THEN '<name 1>' ... END` (Spark SQL): the first rule a row breaks, null if none."""
    whens = " ".join(f"WHEN {rule.sql(bounds)} THEN '{rule.name}'" for rule in rules)
    return f"CASE {whens} END"


@lru_cache(maxsize=64)
def translate(spark_sql: str, dialect: str) -> str:
    """A Spark SQL expression in another engine's dialect (sqlglot), e.g. `duckdb`."""
    import sqlglot

    return sqlglot.transpile(spark_sql, read="spark", write=dialect)[0]


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


def time_unit_of(metrics: dict) -> str | None:
    """The file's time unit from the digit counts of its valid epochs; SourceError when it mixes units."""
    units = {digits: unit for unit, digits in TIME_UNIT_DIGITS.items()}
    low, high = metrics.get("min_time_digits"), metrics.get("max_time_digits")
    if low != high:
        raise SourceError(
            f"mixed time units in one file: both {units[low]} ({low}-digit) and {units[high]} ({high}-digit) "
            "epochs; Binance files use one unit each, so the file is corrupt: nothing was written"
        )
    return units.get(low)


# ---------------------------------------------------------------- trade id layout: uniqueness and gaps


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


def analyse_segments(segments, *, ids_sorted: bool = False) -> IdLayout | None:
    """Decide uniqueness and gaps from runs (n, first_id, last_id); None when the runs cannot tell.

    A run holds distinct ids (one per position). When every run is dense (n == last - first + 1) it
    covers its whole range; sorted by first id the runs are then disjoint exactly when the ids are
    unique, and the holes between them are the gaps. A run that is not dense merged runs that are not
    adjacent (rows out of id order, or a gap and a duplicate whose offsets cancel): undecided, unless
    the rows were in sorted id order (`ids_sorted`), where that can only come from an id repeating.
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
