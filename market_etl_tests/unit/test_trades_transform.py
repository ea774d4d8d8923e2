"""The ETL's pure parts: schema constants, header/drift detection, parsing, rules, id layout, checks.

Spark tests share the session's one SparkSession (`spark` fixture) and run the transforms on a few
hand-written lines, so each expectation is visible in the test.
"""
import datetime as dt
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql import Observation
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from market_etl.core import tables as catalog
from market_etl.core.checks import (
    CHECKS,
    RULE_CHECKS,
    contiguity_outcome,
    reconciliation_outcome,
    rule_check_outcome,
)
from market_etl.core.keys import TradePartition
from market_etl.core.trades import (
    PARTITION_COLUMNS,
    PARTITION_SCHEMA,
    PRICE_TYPE,
    PROCESSED_SCHEMA,
    QUANTITY_TYPE,
    REJECTED_SCHEMA,
    RULES,
    SOURCE_COLUMNS,
    SOURCE_SCHEMA,
    TRADES_COLUMNS,
    TRADES_SCHEMA,
    Gap,
    SchemaDrift,
    SourceError,
    SourceLayout,
    analyse_segments,
    apply_rules,
    drop_exact_duplicates,
    duplicated_ids,
    id_segments,
    ids_in_order,
    parse_decimal,
    parse_fields,
    rejected_rows,
    sorted_within_days,
    source_layout,
    split_fields,
    time_unit_of,
    valid_trades,
    with_partition_columns,
)

JULY = TradePartition("BTCUSDT", "2025-07")
JULY_START_US = 1751328000 * 1_000_000  # 2025-07-01T00:00:00Z
AUGUST_START_US = 1754006400 * 1_000_000
HEADER = "id,price,qty,quote_qty,time,is_buyer_maker,is_best_match"


def lines_frame(spark, lines):
    return spark.createDataFrame([(line,) for line in lines], "value string")


def checked_frame(spark, lines, partition=JULY, observation=None):
    layout = source_layout(lines[0])
    return apply_rules(parse_fields(split_fields(lines_frame(spark, lines), layout)), partition, observation)


def trade_line(trade_id, price="93576.00000000", qty="0.00136000", quote="127.26336000",
               time=JULY_START_US + 10_866, maker="True", best="True"):
    return f"{trade_id},{price},{qty},{quote},{time},{maker},{best}"


# ---------------------------------------------------------------- schema constants


def test_schema_constants_agree_with_the_catalog_and_spark_types():
    assert TRADES_COLUMNS == catalog.TRADES_COLUMNS
    assert PARTITION_COLUMNS == catalog.TRADES_PARTITION_KEYS
    assert [(f.name, f.dataType.simpleString()) for f in TRADES_SCHEMA.fields] == list(TRADES_COLUMNS)
    assert [(f.name, f.dataType.simpleString()) for f in PARTITION_SCHEMA.fields] == list(PARTITION_COLUMNS)


def test_transform_outputs_have_the_declared_schemas(spark):
    def types(schema):
        return [(f.name, f.dataType) for f in schema.fields]

    lines = lines_frame(spark, [trade_line(1), trade_line(2, price="0")])
    fields = split_fields(lines, SourceLayout(None))
    assert types(fields.select(*SOURCE_COLUMNS).schema) == types(SOURCE_SCHEMA)
    checked = apply_rules(parse_fields(fields), JULY)
    assert types(valid_trades(checked).schema) == types(TRADES_SCHEMA)
    assert types(with_partition_columns(valid_trades(checked), JULY).schema) == types(PROCESSED_SCHEMA)
    assert types(rejected_rows(checked).schema) == types(REJECTED_SCHEMA)


def test_rules_and_checks_are_declared_once():
    names = [rule.name for rule in RULES]
    reasons = [rule.reason for rule in RULES]
    assert len(set(names)) == len(names) and len(set(reasons)) == len(reasons)
    assert set(RULE_CHECKS) == {rule.check for rule in RULES}
    assert [c.name for c in CHECKS] == [*RULE_CHECKS, "rows_reconciled", "trade_ids_contiguous"]
    assert {c.name: c.blocking for c in CHECKS}["trade_ids_contiguous"] is False
    assert all(c.blocking and c.severity == "ERROR" for c in CHECKS if c.name != "trade_ids_contiguous")


# ---------------------------------------------------------------- the first line: header and drift


def test_header_is_detected_and_skipped_headerless_is_not():
    assert source_layout(HEADER + "\n").header == HEADER
    assert source_layout(HEADER + "\r\n").header == HEADER
    assert source_layout(trade_line(1) + "\n").header is None


@pytest.mark.parametrize("first_line, named", [
    ("id,price,qty,quote_qty,time,is_buyer_maker", "missing column(s) is_best_match"),
    (HEADER + ",is_liquidation", "unexpected column(s) is_liquidation"),
    ("id,price,quantity,quote_qty,time,is_buyer_maker,is_best_match", "missing column(s) qty"),
    ("id,qty,price,quote_qty,time,is_buyer_maker,is_best_match", "out of order"),
    ("4359935386,93576.00000000,0.00136000,127.26336000,1735689600010866,True", "is_best_match missing"),
    ("4359935386,93576.00000000,0.00136000,127.26336000,1735689600010866,True,True,X",
     "unexpected column 8 (value 'X')"),
])
def test_schema_drift_fails_naming_the_column(first_line, named):
    with pytest.raises(SchemaDrift, match=named.replace("(", r"\(").replace(")", r"\)")):
        source_layout(first_line)


# ---------------------------------------------------------------- parsing: one output whatever the spelling


def _variants():
    """The same three trades as a spot file (us, True) and as Binance's other spellings."""
    trades = [(4359935386, "93576.00000000", "0.00136000", "127.26336000", JULY_START_US + 10_000, True),
              (4359935387, "93576.01000000", "0.00212000", "198.38114120", JULY_START_US + 86_400_000_000, False),
              (4359935388, "0.00000001", "99999999999.99999999", "999.99999999", AUGUST_START_US - 1_000, True)]

    def render(unit_ms: bool, lower: bool, header: bool):
        words = ("true", "false") if lower else ("True", "False")
        body = [trade_line(i, p, q, qq, t // 1000 if unit_ms else t, words[not m], words[0])
                for i, p, q, qq, t, m in trades]
        return [HEADER, *body] if header else body
    return render


@pytest.mark.parametrize("unit_ms, lower, header", [(True, False, False), (False, True, False),
                                                    (False, False, True), (True, True, True)])
def test_header_time_unit_and_bool_spelling_give_identical_output(spark, unit_ms, lower, header):
    render = _variants()
    expected = with_partition_columns(valid_trades(checked_frame(spark, render(False, False, False))), JULY)
    actual = with_partition_columns(valid_trades(checked_frame(spark, render(unit_ms, lower, header))), JULY)
    assertDataFrameEqual(actual, expected)
    assert actual.count() == 3


def test_values_keep_every_source_digit(spark):
    prices = ["93576.00000000", "0.00000001", "9999999999.99999999", "1.5", "42", "+7.00000001"]
    lines = [trade_line(1000 + i, price=p, qty=p.lstrip("+"), quote=p.lstrip("+")) for i, p in enumerate(prices)]
    rows = valid_trades(checked_frame(spark, lines)).orderBy("trade_id").collect()
    assert [r.price for r in rows] == [Decimal(p) for p in prices]
    assert [f"{r.price:.8f}" for r in rows][:3] == prices[:3]  # Binance's own form comes back character for character
    assert [r.quantity for r in rows] == [Decimal(p.lstrip("+")) for p in prices]
    big = "12345678901234567890.12345678"  # 20 whole digits: decimal(28,8)'s limit, beyond a long's range
    [row] = valid_trades(checked_frame(spark, [trade_line(1, qty=big, quote=big)])).collect()
    assert (f"{row.quantity:.8f}", f"{row.quote_qty:.8f}") == (big, big)


@pytest.mark.parametrize("data_type", [PRICE_TYPE, QUANTITY_TYPE])
def test_decimals_are_exact_or_null_never_rounded(spark, data_type):
    cases = {
        "93576.00000000": "93576.00000000", "-3.25000000": "-3.25", "-0.50000000": "-0.5",
        "+7.00000001": "7.00000001", "0.5": "0.5", "42": "42", "9999999999.99999999": "9999999999.99999999",
        "1.2.00000000": None, "12.1234.567": None, "1.": None, "1e5": None, " 1.50000000": "1.5", "1.5\t": "1.5",
        "5.0000000a": None, "1.123456789": None, ".": None, "": None,
        "12345678901.00000000": None if data_type == PRICE_TYPE else "12345678901",
        "99999999999.99999999": None if data_type == PRICE_TYPE else "99999999999.99999999",
    }
    frame = spark.createDataFrame([(text,) for text in cases], "text string")
    parsed = dict(frame.select("text", parse_decimal(F.col("text"), data_type).alias("value")).collect())
    assert parsed == {text: None if value is None else Decimal(value) for text, value in cases.items()}


def test_trade_time_and_day_come_from_the_utc_epoch(spark):
    edges = [JULY_START_US, JULY_START_US + 86_400_000_000 - 1, JULY_START_US + 86_400_000_000, AUGUST_START_US - 1]
    lines = [trade_line(1 + i, time=t) for i, t in enumerate(edges)]
    rows = with_partition_columns(valid_trades(checked_frame(spark, lines)), JULY).orderBy("trade_id").collect()
    assert [r.day for r in rows] == [1, 1, 2, 31]
    assert {(r.year, r.month, r.symbol) for r in rows} == {(2025, 7, "BTCUSDT")}
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    assert [round((r.trade_time.replace(tzinfo=dt.timezone.utc) - epoch) / dt.timedelta(microseconds=1))
            for r in rows] == edges


# ---------------------------------------------------------------- rules and the quarantine


BROKEN_RULES = [  # (line, rule, reason): every line breaks exactly the rule named
    ("4359935386,93576.00000000,0.00136000,127.26336000", "seven_fields", "malformed_line"),
    (trade_line(1) + ",extra", "seven_fields", "malformed_line"),
    (trade_line("x1"), "trade_id_integer", "trade_id_invalid"),
    (trade_line(-5), "trade_id_integer", "trade_id_invalid"),
    (trade_line(1, maker="yes"), "flags_boolean", "flag_invalid"),
    (trade_line(1, best=""), "flags_boolean", "flag_invalid"),
    (trade_line(1, quote="1e5"), "quote_qty_decimal", "quote_qty_invalid"),
    (trade_line(1, time=1751328000), "trade_time_epoch", "trade_time_invalid"),  # seconds: 10 digits
    (trade_line(1, time="17513280000x0"), "trade_time_epoch", "trade_time_invalid"),
    (trade_line(1, time=JULY_START_US - 1), "trade_time_in_month", "trade_time_outside_month"),
    (trade_line(1, time=AUGUST_START_US), "trade_time_in_month", "trade_time_outside_month"),
    (trade_line(1, time=AUGUST_START_US // 1000), "trade_time_in_month", "trade_time_outside_month"),
    (trade_line(1, price=""), "price_present", "price_missing"),
    (trade_line(1, price="abc"), "price_decimal", "price_unparsable"),
    (trade_line(1, price="1.123456789"), "price_decimal", "price_unparsable"),  # never rounded
    (trade_line(1, price="1.1234.678"), "price_decimal", "price_unparsable"),
    (trade_line(1, price="12345678901.00000000"), "price_decimal", "price_unparsable"),  # > decimal(18,8)
    (trade_line(1, price="0.00000000"), "price_positive", "price_not_positive"),
    (trade_line(1, price="-0.50000000"), "price_positive", "price_not_positive"),
    (trade_line(1, qty=""), "quantity_present", "quantity_missing"),
    (trade_line(1, qty="NaN"), "quantity_decimal", "quantity_unparsable"),
    (trade_line(1, qty="-1.00000000"), "quantity_positive", "quantity_not_positive"),
    (trade_line(1, qty="0"), "quantity_positive", "quantity_not_positive"),
]


def test_each_rule_quarantines_its_rows_with_the_original_line(spark):
    checked = checked_frame(spark, [trade_line(2), *[line for line, _, _ in BROKEN_RULES]])
    assert [r.trade_id for r in valid_trades(checked).collect()] == [2]
    rejected = {r.line: (r.rule, r.reason) for r in rejected_rows(checked).collect()}
    assert rejected == {line: (rule, reason) for line, rule, reason in BROKEN_RULES}
    assert {rule for _, rule, _ in BROKEN_RULES} == {rule.name for rule in RULES}  # every rule exercised


def test_observed_counts_and_time_unit(spark):
    observation = Observation()
    checked = checked_frame(spark, [trade_line(1), trade_line(2, price="0"), trade_line(3, time=1)], JULY,
                            observation)
    valid_trades(checked).collect()
    metrics = observation.get
    assert (metrics["rows_in"], metrics["rows_rejected"]) == (3, 2)
    assert time_unit_of(metrics) == "us"


def test_mixed_time_units_in_one_file_fail(spark):
    observation = Observation()
    checked = checked_frame(spark, [trade_line(1), trade_line(2, time=(JULY_START_US + 5_000_000) // 1000)],
                            JULY, observation)
    valid_trades(checked).collect()
    with pytest.raises(SourceError, match=r"mixed time units.*ms \(13-digit\) and us \(16-digit\)"):
        time_unit_of(observation.get)


def test_rows_are_sorted_by_trade_time_within_each_task(spark):
    times = [JULY_START_US + t for t in (500, 100, 100, 300)]
    lines = [trade_line(10 + i, time=t) for i, t in enumerate(times)]
    ordered = sorted_within_days(valid_trades(checked_frame(spark, lines)).coalesce(1)).collect()
    assert [r.trade_id for r in ordered] == [11, 12, 13, 10]


# ---------------------------------------------------------------- duplicates


def test_duplicates_tell_exact_copies_from_conflicting_ones(spark):
    lines = [trade_line(1), trade_line(1), trade_line(1), trade_line(2), trade_line(3), trade_line(3, price="1.0")]
    trades = valid_trades(checked_frame(spark, lines))
    summary = {r.trade_id: (r.copies, r.variants) for r in duplicated_ids(trades).collect()}
    assert summary == {1: (3, 1), 3: (2, 2)}
    assert sorted(r.trade_id for r in drop_exact_duplicates(trades.where("trade_id < 3")).collect()) == [1, 2]


# ---------------------------------------------------------------- id layout: runs of consecutive ids


def _layout(spark, ids, slices=2):
    frame = spark.sparkContext.parallelize([(i,) for i in ids], slices).toDF("trade_id bigint")
    rows = [tuple(r) for r in id_segments(frame).select("n", "first_id", "last_id").collect()]
    return analyse_segments(rows), frame


def test_runs_find_gaps_in_ordered_ids_without_sorting(spark):
    ids = [*range(100, 120), *range(125, 140), 141]
    layout, _ = _layout(spark, ids, slices=3)
    assert layout.unique and layout.rows == len(ids) and (layout.first_id, layout.last_id) == (100, 141)
    assert layout.gaps == (Gap(119, 125), Gap(139, 141)) and layout.missing_ids == 6


def test_runs_find_duplicates_and_fall_back_to_sorted_ids_when_unordered(spark):
    duplicated, _ = _layout(spark, [1, 2, 3, 3, 4, 5])
    assert duplicated is not None and not duplicated.unique
    shuffled = [*range(1, 50), *range(60, 80)]
    random.Random(4).shuffle(shuffled)
    unknown, frame = _layout(spark, shuffled)
    assert unknown is None  # rows out of id order: runs cannot tell
    rows = [tuple(r) for r in id_segments(ids_in_order(frame)).select("n", "first_id", "last_id").collect()]
    layout = analyse_segments(rows, ids_sorted=True)
    assert layout.unique and layout.gaps == (Gap(49, 60),) and layout.rows == 69
    gap_then_repeat = [1, 2, 4, 5, 5, 6]  # offsets 1, 1, 2, 2, 1, 1: one group, not dense
    _, frame = _layout(spark, gap_then_repeat[::-1])
    rows = [tuple(r) for r in id_segments(ids_in_order(frame)).select("n", "first_id", "last_id").collect()]
    assert analyse_segments(rows) is None
    assert analyse_segments(rows, ids_sorted=True).unique is False


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(1, 60), max_size=40), cuts=st.lists(st.integers(0, 40), max_size=4))
def test_analysis_of_runs_agrees_with_brute_force(ids, cuts):
    """Runs as id_segments builds them (per task, trade_id - position) over any order of any ids."""
    bounds = sorted({0, len(ids), *[min(c, len(ids)) for c in cuts]})
    runs: dict[tuple[int, int], list[int]] = {}
    for task, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        for position, trade_id in enumerate(ids[lo:hi]):
            runs.setdefault((task, trade_id - position), []).append(trade_id)
    layout = analyse_segments([(len(v), min(v), max(v)) for v in runs.values()])
    if layout is None:
        return  # undecided is allowed (the caller then sorts); a wrong answer is not
    assert layout.rows == len(ids)
    assert layout.unique == (len(set(ids)) == len(ids))
    if layout.unique and ids:
        present = set(ids)
        missing = [i for i in range(min(ids), max(ids) + 1) if i not in present]
        assert layout.missing_ids == len(missing)
        assert [g.after_id + 1 for g in layout.gaps] == [m for m in missing if m - 1 in present]


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(1, 40), max_size=40))
def test_sorted_ids_are_always_decided(ids):
    """The fallback's input: ids sorted in one task. A gap and a duplicate can give two runs the same
    offset (one group, not dense); sorted, that can only mean a repeated id."""
    ids = sorted(ids)
    runs: dict[int, list[int]] = {}
    for position, trade_id in enumerate(ids):
        runs.setdefault(trade_id - position, []).append(trade_id)
    layout = analyse_segments([(len(v), min(v), max(v)) for v in runs.values()], ids_sorted=True)
    assert layout is not None and layout.rows == len(ids)
    assert layout.unique == (len(set(ids)) == len(ids))


def test_ordered_unique_ids_are_always_decided():
    """Files in id order (the normal case) never need the sorting fallback."""
    ids = [*range(5, 30), *range(33, 40), 50]
    runs: dict[tuple[int, int], list[int]] = {}
    for task, chunk in enumerate((ids[:10], ids[10:25], ids[25:])):
        for position, trade_id in enumerate(chunk):
            runs.setdefault((task, trade_id - position), []).append(trade_id)
    layout = analyse_segments([(len(v), min(v), max(v)) for v in runs.values()])
    assert layout is not None and layout.unique and layout.gaps == (Gap(29, 33), Gap(39, 50))


# ---------------------------------------------------------------- check outcomes


def test_rule_checks_fail_beyond_the_tolerance_and_name_the_reasons():
    rejected = {"price_positive": 2, "price_present": 1, "trade_time_in_month": 4}
    strict = rule_check_outcome("positive_prices", 1000, rejected, 0.0, [7, 9], ["7,0,...", "9,,..."])
    assert not strict.passed and strict.severity == "ERROR"
    assert strict.metadata["rows_rejected"] == 3
    assert strict.metadata["rejected_by_reason"] == {"price_missing": 1, "price_unparsable": 0, "price_not_positive": 2}
    assert strict.metadata["first_offending_ids"] == [7, 9]
    assert rule_check_outcome("positive_prices", 1000, rejected, 0.003).passed
    assert not rule_check_outcome("positive_prices", 1000, rejected, 0.002).passed
    assert rule_check_outcome("positive_quantities", 1000, rejected, 0.0).passed


def test_reconciliation_and_contiguity_outcomes():
    assert reconciliation_outcome(100, 90, 7, 3).passed
    broken = reconciliation_outcome(100, 90, 7, 2)
    assert not broken.passed and broken.metadata["unaccounted"] == 1
    layout = analyse_segments([(5, 1, 5), (3, 8, 10)])
    outcome = contiguity_outcome(layout)
    assert not outcome.passed and outcome.severity == "WARN"
    assert outcome.metadata["gaps"] == 1 and outcome.metadata["missing_ids"] == 2
    assert outcome.metadata["first_gaps"] == ["6..7 (2 missing)"]
    assert contiguity_outcome(analyse_segments([(5, 1, 5)])).passed
