"""The DuckDB engine and the Spark engine give identical results on every ETL fixture.

Each case puts one source CSV into two local lakes and runs the Spark engine (`stages.etl.run_etl`, on
the test session's one SparkSession) on one and the DuckDB engine (`run_duckdb_etl`) on the other, then
asserts: the same valid rows (every value read back from the Parquet, day by day, each file sorted by
trade time), the same rejected lines with the same rule and reason, the same counts and the same
check outcomes (metadata included), the same Parquet physical and logical types; or the same error.
"""
import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market_etl.core.keys import TradePartition, Zone, lake_key
from market_etl.core.rules import RULES, SchemaDrift, SourceError
from market_etl.lake import LocalLake
from market_etl.stages.engines.duckdb_engine import run_duckdb_etl
from market_etl.stages.etl import run_etl
from market_etl_devtools.mirror.generate import Defects, generate_month

JULY = TradePartition("BTCUSDT", "2025-07")
JULY_START_US = 1751328000 * 1_000_000
AUGUST_START_US = 1754006400 * 1_000_000
DAY_US = 86_400_000_000
HEADER = "id,price,qty,quote_qty,time,is_buyer_maker,is_best_match"
#: What both engines report and must agree on (timings and locations aside).
COMPARED_METADATA = ("rows_in", "rows_written", "rows_rejected", "rejected_by_reason", "duplicates_removed",
                     "deduplication", "days_written", "first_trade_id", "last_trade_id", "id_gaps", "missing_ids",
                     "time_unit", "header")


def line(trade_id, price="93576.00000000", qty="0.00136000", quote="127.26336000", time=JULY_START_US + 10_866,
         maker="True", best="True"):
    return f"{trade_id},{price},{qty},{quote},{time},{maker},{best}"


# ---------------------------------------------------------------- the fixtures


def generated(defects: Defects | None = None, trades_per_day: int = 40, seed: int = 1):
    def make(tmp_path: Path) -> bytes:
        g = generate_month(tmp_path / "mirror", JULY.symbol, JULY.month, trades_per_day, seed=seed, defects=defects)
        with zipfile.ZipFile(g.zip_path) as archive:
            return archive.read(g.csv_name)
    return make


def written(lines, end="\n"):
    return lambda tmp_path: "".join(f"{text}{end}" for text in lines).encode()


#: Every field spelling that could tell two parsers apart, each in an otherwise valid line.
ODD_VALUES = ["93576.00000000", "-3.25000000", "-0.50000000", "+7.00000001", "0.5", "42", "9999999999.99999999",
              "1.2.00000000", "12.1234.567", "1.", "1e5", "1E5", " 1.50000000", "1.5\t", "5.0000000a", "1.123456789",
              ".", "", "12345678901.00000000", "99999999999.99999999", ".5", "+.5", "-.5", "5", " 12 ", "+", "-",
              " ", "00012", "0", "0.00000000", "-0", "NaN", "Infinity", "0x10", "1_000", "１２", "1.5 ", "1.12345678 ",
              "12345678901234567890.12345678", "123456789012345678901.0"]
ODD_IDS = ["1", "+2", " 3", "4 ", "5.", "6.0", "7.9", ".", "-8", "0", "x9", "", "9223372036854775807",
           "9223372036854775808", "1e3", "12a"]
#: Microsecond times (a file holds one unit; ms spellings are in ODD_TIMES_MS, a file of their own).
ODD_TIMES = [str(JULY_START_US), str(JULY_START_US)[:-1] + ".", "1751328000", "17513280000x0", str(AUGUST_START_US),
             str(AUGUST_START_US - 1), str(JULY_START_US - 1), "+" + str(JULY_START_US)[1:], "",
             " " + str(JULY_START_US + 5)[1:], str(JULY_START_US + 5)[:-1] + " ", "0" * 16, "-" + "1" * 15]
ODD_TIMES_MS = [str(JULY_START_US // 1000), " " + str(JULY_START_US // 1000 + 7)[1:], "+" + str(JULY_START_US // 1000)[1:],
                str(JULY_START_US // 1000 + 9)[:-1] + ".", str(AUGUST_START_US // 1000), "1" * 12, "1" * 14, "1" * 15]
ODD_FLAGS = ["True", "true", "False", "false", "TRUE", "1", "", " True", "yes"]


def odd_lines():
    lines, next_id = [], 100
    for value in ODD_VALUES:
        for field in ("price", "qty", "quote"):
            next_id += 1
            lines.append(line(next_id, **{field: value}))
    for text in ODD_IDS:
        lines.append(line(text))
    for text in ODD_TIMES:
        next_id += 1
        lines.append(line(next_id, time=text))
    for text in ODD_FLAGS:
        next_id += 2
        lines += [line(next_id, maker=text), line(next_id + 1, best=text)]
    lines += [line(900) + ",extra", "1,2,3", "", "just text", ",,,,,,", line(901).replace(",", ";"), "", "\r", ""]
    return lines


def burst_lines():
    """A crash-day burst: hundreds of trades in the same microseconds, ids interleaved, across midnight."""
    lines = []
    midnight = JULY_START_US + 14 * DAY_US
    for k in range(300):
        at = midnight - 2 + (k % 4)  # two microseconds before and after midnight
        lines.append(line(5_000 + (k * 7) % 300, price=f"{90000 + k % 13}.{k:08d}"[:14], time=at,
                          maker="True" if k % 3 else "False"))
    return lines


CASES = {
    "clean_us_capital_bools": generated(),
    "ms_header_lowercase_bools": generated(Defects(time_unit="ms", header=True, lowercase_bools=True)),
    "every_generated_defect": generated(Defects(duplicates=3, out_of_order=3, id_gaps=2, outside_month=4,
                                                bad_values=12, header=True)),
    "duplicates_only": generated(Defects(duplicates=5), trades_per_day=7),
    "out_of_order_ms": generated(Defects(out_of_order=6, time_unit="ms"), trades_per_day=9),
    "one_row": written([line(4359935386)]),
    "one_row_no_final_newline": lambda tmp_path: line(4359935386).encode(),
    "blank_lines_at_the_end": written([line(1), line(2), "", ""]),
    "one_row_with_header": written([HEADER, line(4359935386)]),
    "header_only": written([HEADER]),
    "crlf_line_ends": written([line(1), line(2, price="0"), line(3)], end="\r\n"),
    "odd_values": written(odd_lines()),
    "odd_times_ms": written([line(7000 + i, time=text) for i, text in enumerate(ODD_TIMES_MS)]),
    "header_repeated_inside": written([HEADER, line(1), HEADER, line(2)]),
    "crash_day_burst": written(burst_lines()),
    # Bytes the DuckDB engine's line reader could split or null on: each line must still read whole.
    "control_bytes_inside_lines": written([line(1), line(2) + "\x01junk", line(3, price="93576.0\x0100000"), "\x02",
                                           line(4, best="\x02"), line(5, best="True\x00"), "\x01", line(6)]),
    "every_rule_broken": written([line(2), "4359935386,93576.00000000,0.00136000,127.26336000", line(1) + ",extra",
                                  line("x1"), line(-5), line(1, maker="yes"), line(1, best=""), line(1, quote="1e5"),
                                  line(1, time=1751328000), line(1, time="17513280000x0"),
                                  line(1, time=JULY_START_US - 1), line(1, time=AUGUST_START_US),
                                  line(1, price=""), line(1, price="abc"), line(1, price="1.123456789"),
                                  line(1, price="0.00000000"), line(1, qty=""), line(1, qty="NaN"),
                                  line(1, qty="-1.00000000")]),
}
FAILING_CASES = {
    "conflicting_duplicates": generated(Defects(conflicting_duplicates=2)),
    "mixed_time_units": generated(Defects(mixed_units=True)),
    "empty_file": written([]),
    "drift_missing_column": written(["id,price,qty,quote_qty,time,is_buyer_maker", "1,2,3,4,5,True"]),
    "drift_extra_column": written([HEADER + ",is_liquidation"]),
    "drift_extra_value": written([line(4359935386) + ",1"]),
    "drift_out_of_order_header": written(["price,id,qty,quote_qty,time,is_buyer_maker,is_best_match"]),
}


# ---------------------------------------------------------------- running both engines


def lakes_with(source: bytes, tmp_path: Path) -> tuple[LocalLake, LocalLake]:
    pair = LocalLake(tmp_path / "spark-lake"), LocalLake(tmp_path / "duckdb-lake")
    for lake in pair:
        lake.put_bytes(lake_key(Zone.RAW_UNZIPPED, JULY), source)
    return pair


def staged_rows(lake: LocalLake) -> dict[int, list[tuple]]:
    """Rows per day from an engine's staged files; each file holds its partition columns, constant per file."""
    by_day = {}
    for path in sorted(lake.path(lake_key(Zone.PROCESSED, JULY)).glob("day=*/symbol=*/*.parquet")):
        day = int(path.parent.parent.name.split("=")[1])
        rows = [tuple(r.values()) for r in pq.read_table(path, partitioning=None).to_pylist()]
        assert {(r[7], r[8], r[9], r[10]) for r in rows} == {(JULY.year, JULY.month_number, day, JULY.symbol)}
        by_day.setdefault(day, []).extend(rows)
    return by_day


def assert_sorted_by_time(by_day: dict[int, list[tuple]]) -> None:
    for day, rows in by_day.items():
        keys = [(r[4], r[0]) for r in rows]
        assert keys == sorted(keys), f"day {day} is not sorted by trade time"


def rejected(lake: LocalLake) -> list[tuple]:
    root = lake.path(lake_key(Zone.REJECTED, JULY))
    if not root.exists():
        return []
    table = pq.read_table(root, columns=["line", "reason", "rule"])
    return sorted(tuple(r.values()) for r in table.to_pylist())


def checks(result) -> list[tuple]:
    return [(c.name, c.passed, c.severity, c.metadata) for c in result.checks]


@pytest.fixture(scope="module")
def spark_reference_schema(spark, tmp_path_factory):
    """The Parquet schema Spark writes for a processed row with every table column in the file."""
    import datetime as dt
    from decimal import Decimal

    from market_etl.core.trades import PROCESSED_SCHEMA

    out = tmp_path_factory.mktemp("reference")
    row = (1, Decimal("1.5"), Decimal("2.5"), Decimal("3.5"), dt.datetime(2025, 7, 1), True, False, 2025, 7, 1, "X")
    spark.createDataFrame([row], PROCESSED_SCHEMA).coalesce(1).write.mode("overwrite").parquet(str(out / "ref"))
    [path] = (out / "ref").glob("*.parquet")
    return pq.ParquetFile(path).schema


def column_types(schema) -> list[tuple]:
    """Per leaf column: name, physical type, logical type, converted type, length, repetition."""
    return [(c.name, c.physical_type, str(c.logical_type), c.converted_type, c.length, c.max_definition_level,
             c.max_repetition_level) for c in (schema.column(i) for i in range(len(schema)))]


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_engines_write_the_same_rows_rejects_counts_checks_and_schema(case, spark, spark_reference_schema,
                                                                          tmp_path):
    spark_lake, duck_lake = lakes_with(CASES[case](tmp_path), tmp_path)
    by_spark = run_etl(spark, JULY, spark_lake)
    by_duckdb = run_duckdb_etl(JULY, duck_lake)

    spark_days, duckdb_days = staged_rows(spark_lake), staged_rows(duck_lake)
    assert sorted(duckdb_days) == sorted(spark_days)
    for day in spark_days:  # the same rows on each day, every value exact
        assert sorted(duckdb_days[day]) == sorted(spark_days[day]), f"day {day}"
    assert_sorted_by_time(spark_days)
    assert_sorted_by_time(duckdb_days)

    assert rejected(duck_lake) == rejected(spark_lake)
    for key in COMPARED_METADATA:
        assert by_duckdb.metadata[key] == by_spark.metadata[key], key
    assert checks(by_duckdb) == checks(by_spark)
    assert by_duckdb.data_version == by_spark.data_version

    for path in duck_lake.path(lake_key(Zone.PROCESSED, JULY)).glob("day=*/symbol=*/*.parquet"):
        assert column_types(pq.ParquetFile(path).schema) == column_types(spark_reference_schema), path
    for path in spark_lake.path(lake_key(Zone.PROCESSED, JULY)).glob("day=*/symbol=*/*.parquet"):
        assert column_types(pq.ParquetFile(path).schema) == column_types(spark_reference_schema), path


def test_the_odd_values_fixture_reaches_every_rule(tmp_path):
    """The parity cases are only as good as their coverage: together they break every rule."""
    _, duck_lake = lakes_with(CASES["odd_values"](tmp_path), tmp_path)
    run_duckdb_etl(JULY, duck_lake)
    assert {rule for _, _, rule in rejected(duck_lake)} == {rule.name for rule in RULES}


@pytest.mark.parametrize("case", sorted(FAILING_CASES))
def test_both_engines_refuse_the_same_sources_with_the_same_error(case, spark, tmp_path):
    spark_lake, duck_lake = lakes_with(FAILING_CASES[case](tmp_path), tmp_path)
    with pytest.raises((SourceError, SchemaDrift)) as by_spark:
        run_etl(spark, JULY, spark_lake)
    with pytest.raises((SourceError, SchemaDrift)) as by_duckdb:
        run_duckdb_etl(JULY, duck_lake)
    assert (type(by_duckdb.value), str(by_duckdb.value).replace(str(duck_lake.root), "<lake>")) == \
        (type(by_spark.value), str(by_spark.value).replace(str(spark_lake.root), "<lake>"))
    assert not list(duck_lake.list(lake_key(Zone.PROCESSED) + "/"))


def test_both_engines_agree_inside_a_dagster_run_with_the_session_of_pysparkresource(spark, tmp_path):
    """dagster-pyspark's PySparkResource hands the Spark engine its session inside a Dagster run (here the
    test session's: getOrCreate), the way an in-process Spark step gets one; the DuckDB engine runs beside it."""
    import dagster as dg
    from dagster_pyspark import PySparkResource

    spark_lake, duck_lake = lakes_with(generated(Defects(duplicates=2, bad_values=3, header=True))(tmp_path), tmp_path)

    @dg.asset
    def engines_compared(pyspark: PySparkResource) -> dict:
        by_spark = run_etl(pyspark.spark_session, JULY, spark_lake)
        by_duckdb = run_duckdb_etl(JULY, duck_lake)
        return {"spark": [by_spark.metadata[k] for k in COMPARED_METADATA], "same_checks":
                checks(by_spark) == checks(by_duckdb), "duckdb": [by_duckdb.metadata[k] for k in COMPARED_METADATA]}

    result = dg.materialize([engines_compared], resources={"pyspark": PySparkResource(spark_config={})})
    compared = result.output_for_node("engines_compared")
    assert compared["spark"] == compared["duckdb"] and compared["same_checks"]
    assert rejected(duck_lake) == rejected(spark_lake)


def test_a_line_that_is_not_utf8_is_quarantined_by_spark_and_fails_the_duckdb_engine(spark, tmp_path):
    """The one input where the engines part (README, "ETL engines"): Spark reads the bad bytes as U+FFFD and
    rejects the line; DuckDB's reader cannot read it, so that engine fails the partition naming the line."""
    source = written([line(1), line(2), line(3)])(tmp_path).replace(b"\n2,93576", b"\n2,9\xff3576", 1)
    spark_lake, duck_lake = lakes_with(source, tmp_path)
    by_spark = run_etl(spark, JULY, spark_lake)
    assert (by_spark.metadata["rows_written"], by_spark.metadata["rows_rejected"]) == (2, 1)
    with pytest.raises(SourceError, match="line 2 is not UTF-8"):
        run_duckdb_etl(JULY, duck_lake)
    assert not list(duck_lake.list(lake_key(Zone.PROCESSED) + "/"))
