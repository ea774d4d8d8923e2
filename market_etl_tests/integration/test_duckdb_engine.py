"""The DuckDB engine as the stage runs it: engine selection, the staged contract, nothing redone when nothing changed.

Its results are proven equal to the Spark engine's in test_engine_parity.py; these tests cover what only
this engine does.
"""
import pyarrow.parquet as pq
import pytest

from market_etl.core.keys import RUN_ID_PATTERN, TradePartition, Zone, lake_key, staged_manifest_key
from market_etl.core.rules import SourceError
from market_etl.core.staged import StagedVersion
from market_etl.lake import LocalLake
from market_etl.stages import etl
from market_etl.stages.engines.duckdb_engine import (
    READER_CONTROL_BYTES,
    reader_control_bytes,
    run_duckdb_etl,
    scan_source,
)
from market_etl_tests.imports import modules_imported_by

JULY = TradePartition("BTCUSDT", "2025-07")
JULY_START_US = 1751328000 * 1_000_000


def line(trade_id, time=JULY_START_US + 10_866, price="93576.00000000"):
    return f"{trade_id},{price},0.00136000,127.26336000,{time},True,True"


@pytest.fixture
def lake(tmp_path):
    lake = LocalLake(tmp_path / "lake")
    source = lake_key(Zone.RAW_UNZIPPED, JULY)
    lake.put_bytes(source, "".join(f"{line(i, JULY_START_US + i * 3_600_000_000)}\n" for i in range(1, 60)).encode()
                   + (line(99, price="0") + "\n").encode())
    lake.write_meta(source, {"source_sha256": "a" * 64})  # what the unzip stage records
    return lake


def test_engine_selection_defaults_to_duckdb_on_a_local_lake_and_spark_on_s3(lake, s3_lake):
    assert etl.select_engine(lake, env={}) == "duckdb"
    assert etl.select_engine(s3_lake, env={}) == "spark"
    assert etl.select_engine(lake, env={"MARKET_ETL_ETL_ENGINE": "Spark"}) == "spark"
    with pytest.raises(ValueError, match="MARKET_ETL_ETL_ENGINE='polars': expected one of duckdb, spark"):
        etl.select_engine(lake, env={"MARKET_ETL_ETL_ENGINE": "polars"})


def test_the_stage_entry_point_runs_the_default_engine_without_a_jvm(lake, monkeypatch):
    monkeypatch.delenv("MARKET_ETL_ETL_ENGINE", raising=False)
    args = etl.stage_arguments(["--symbol", "BTCUSDT", "--month", "2025-07", "--lake", str(lake.root)])
    m = etl.run_stage(args).metadata
    assert m["engine"] == "duckdb" and "jvm_start_seconds" not in m
    assert (m["rows_in"], m["rows_written"], m["rows_rejected"]) == (60, 59, 1)


def test_files_and_manifest_follow_the_write_audit_publish_contract(lake):
    result = run_duckdb_etl(JULY, lake)
    run = result.metadata["run_id"]
    assert RUN_ID_PATTERN.fullmatch(run)
    staged = StagedVersion.from_json(lake.get_bytes(staged_manifest_key(JULY, run)))
    assert (staged.engine, staged.transform_version, staged.source_sha256) == ("duckdb", etl.TRANSFORM_VERSION, "a" * 64)
    assert (staged.rows_in, staged.rows_written, staged.rows_rejected) == (60, 59, 1)
    assert not staged.publishable and staged.failed_blocking_checks == ("positive_prices",)
    assert [f.key for f in staged.trades_files] == [
        f"{lake_key(Zone.PROCESSED, JULY, day=d)}/{run}-part-00000.snappy.parquet" for d in (1, 2, 3)]
    for f in staged.trades_files:
        table = pq.read_table(lake.path(f.key))
        assert f.rows == table.num_rows and f.bytes == lake.path(f.key).stat().st_size
        assert set(table.column_names) >= {"year", "month", "day", "symbol"}
        assert pq.ParquetFile(lake.path(f.key)).metadata.row_group(0).column(0).statistics.has_min_max
    [quarantine] = staged.rejected_files
    rejected = pq.read_table(lake.path(quarantine.key)).to_pylist()
    assert rejected == [{"line": line(99, price="0"), "reason": "price_not_positive", "rule": "price_positive",
                         "symbol": "BTCUSDT", "month": "2025-07", "run": run}]
    assert not lake.path(lake_key(Zone.TEMP, JULY)).exists()  # the engine's work directory is gone


def test_nothing_is_redone_when_nothing_changed_and_a_new_transform_version_rebuilds(lake, monkeypatch):
    first = run_duckdb_etl(JULY, lake)
    second = run_duckdb_etl(JULY, lake)
    assert first.metadata["status"] == "built" and second.metadata["status"] == "up to date"
    assert first.metadata["run_id"] in second.metadata["skipped_because"]
    assert second.data_version == first.data_version
    assert [(c.name, c.passed) for c in second.checks] == [(c.name, c.passed) for c in first.checks]
    assert second.metadata["rows_written"] == first.metadata["rows_written"]

    monkeypatch.setattr(etl, "TRANSFORM_VERSION", etl.TRANSFORM_VERSION + "-next")
    third = run_duckdb_etl(JULY, lake)
    assert third.metadata["status"] == "built" and third.data_version != first.data_version
    assert third.metadata["run_id"] != first.metadata["run_id"]

    # A new source archive rebuilds; so does a staged file gone missing.
    lake.write_meta(lake_key(Zone.RAW_UNZIPPED, JULY), {"source_sha256": "b" * 64})
    assert run_duckdb_etl(JULY, lake).metadata["status"] == "built"
    staged = StagedVersion.from_json(lake.get_bytes(run_duckdb_etl(JULY, lake).metadata["manifest_key"]))
    lake.path(staged.trades_files[0].key).unlink()
    assert run_duckdb_etl(JULY, lake).metadata["status"] == "built"


@pytest.mark.parametrize("text, blanks", [(b"a\nb\n", 0), (b"a\n\nb\n", 1), (b"a\r\n\r\nb\r\n\r\n", 2),
                                          (b"a\nb", 0), (b"a\n\n\n", 2), (b"", 0),
                                          (b"ab\ncd\n\nef\n\r\ngh\nij\n", 2)])
def test_blank_lines_are_counted_across_chunk_boundaries(tmp_path, monkeypatch, text, blanks):
    from market_etl.stages.engines import duckdb_engine

    path = tmp_path / "f.csv"
    path.write_bytes(text)
    for chunk in (1, 2, 3, 1 << 20):
        monkeypatch.setattr(duckdb_engine, "SCAN_CHUNK_BYTES", chunk)
        assert scan_source(path) == (blanks, False), chunk


def test_the_local_catalog_publishes_files_that_carry_their_partition_columns(lake):
    import duckdb

    from market_etl.lake.duckdb_catalog import refresh_views
    from market_etl.lake.iceberg import open_catalog, publish_staged

    # The fixture month has a few bad prices: tolerated here, so its version is publishable.
    manifest_key = run_duckdb_etl(JULY, lake, reject_tolerance=1.0).metadata["manifest_key"]
    catalog = open_catalog(lake)
    commit = publish_staged(catalog, lake, manifest_key, "test")
    assert commit.rows_added == 59
    views = refresh_views(catalog, lake)
    with duckdb.connect(str(views), read_only=True) as con:
        assert con.execute("SELECT count(*), min(day), max(day), min(symbol) FROM market_data.trades_binance "
                           "WHERE year = 2025 AND month = 7").fetchone() == (59, 1, 3, "BTCUSDT")


def test_a_day_is_written_in_trade_time_order_with_the_id_breaking_ties():
    import pyarrow as pa

    from market_etl.stages.engines.duckdb_engine import in_trade_time_order

    def day(times, ids):
        return pa.table({"trade_id": pa.array(ids, pa.int64()),
                         "trade_time": pa.array(times, pa.timestamp("us", tz="UTC"))})

    shuffled = in_trade_time_order(day([5, 1, 1, 3], [10, 12, 11, 13]))
    assert shuffled.column("trade_id").to_pylist() == [11, 12, 13, 10]
    ordered = day([1, 1, 3, 5], [11, 12, 13, 10])
    assert in_trade_time_order(ordered) is ordered  # already in order: nothing sorted
    assert in_trade_time_order(day([], [])).num_rows == 0


@pytest.mark.parametrize("line, plain", [
    ("4300289722,91437.03000000,0.00045000,41.14666350,1751328000516073,False,True", True),
    ("1,1,2.5,2.5,1751328000516,true,false", True),
    ("1,1.123456789,2,2,1751328000516,true,false", False),  # 9 places: the cast would round
    ("1,1,1e5,2,1751328000516,true,false", False),  # exponent: the cast would accept it
    (" 1,1,2,2,1751328000516,true,false", False),
    ("+1,1,2,2,1751328000516,true,false", False),
    ("1234567890123456789,1,2,2,1751328000516,true,false", False),  # 19 digits: may overflow
    ("1,12345678901,2,2,1751328000516,true,false", False),  # 11 whole digits: out of decimal(18,8)
    ("1,-1,2,2,1751328000516,true,false", False),
    ("1,1,2,2,17513280005160,true,false", False),  # 14 digits: neither unit
    ("1,1,2,2,17513280005160", False),  # no flags: the numbers alone are not a line the pattern vouches for
    # The flags are parsed by comparison whatever the pattern says: only the numeric fields decide.
    ("1,1,2,2,1751328000516,TRUE,false", True),
    ("1,1,2,2,1751328000516,true,false,x", True),
    ("1,1,2,2,1751328000516,true,false\r", True),
])
def test_only_lines_whose_numbers_plain_casts_read_exactly_skip_the_spark_cast_macros(line, plain):
    import re

    from market_etl.stages.engines.duckdb_engine import plain_line_pattern

    assert (re.fullmatch(plain_line_pattern(), line) is not None) == plain


def test_the_stage_on_the_duckdb_engine_never_imports_pyspark(lake, monkeypatch):
    monkeypatch.setenv("MARKET_ETL_ETL_ENGINE", "duckdb")
    stage = ("from market_etl.stages import etl\n"
             f"etl.main(['--symbol', 'BTCUSDT', '--month', '2025-07', '--lake', {str(lake.root)!r}])")
    assert modules_imported_by(stage, "pyspark") == []
    assert lake.read_meta(etl.last_build_key(JULY))["metadata"]["engine"] == "duckdb"  # the stage did run
    # The probe sees pyspark where it is imported: the Spark engine's transforms.
    assert "pyspark.sql" in modules_imported_by("import market_etl.core.trades", "pyspark")


def test_the_line_reader_takes_control_bytes_the_file_does_not_hold(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"1,2\x01,3\n\x02\n")
    assert scan_source(path) == (0, True)
    assert reader_control_bytes(path) == ("\x03", "\x04")
    path.write_bytes(b"1,2,3\n")
    assert scan_source(path) == (0, False)
    assert reader_control_bytes(path) == ("\x01", "\x02")
    path.write_bytes("".join(READER_CONTROL_BYTES[1:]).encode() + b"\n")  # only the first is absent
    with pytest.raises(SourceError, match="MARKET_ETL_ETL_ENGINE=spark"):
        reader_control_bytes(path)


def test_a_line_that_is_not_utf8_fails_the_run_naming_the_line(tmp_path):
    lake = LocalLake(tmp_path / "lake")
    good = "{},93576.00000000,0.00136000,127.26336000,1751328000010866,True,True"
    source = "\n".join(good.format(i) for i in range(1, 2000)).encode().replace(b"1500,", b"1500\xff,", 1)
    lake.put_bytes(lake_key(Zone.RAW_UNZIPPED, JULY), source + b"\n")
    with pytest.raises(SourceError, match=r"line 1500 is not UTF-8.*MARKET_ETL_ETL_ENGINE=spark"):
        run_duckdb_etl(JULY, lake)
    assert not list(lake.list(lake_key(Zone.PROCESSED) + "/"))
