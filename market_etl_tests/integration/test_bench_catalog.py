"""`market-etl bench catalog` at a tiny size: the table it grows holds what real publishes would have left, and
the pipeline bench publishes the staged version its ETL child reported."""
from __future__ import annotations

import datetime as dt

import pytest

from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan
from pyiceberg.conversions import from_bytes
from pyiceberg.io.pyarrow import parquet_file_to_data_file

from market_etl.cli import main
from market_etl.core.keys import TradePartition, new_run_id
from market_etl.core.tables import TRADES
from market_etl.lake import LocalLake
from market_etl.lake.iceberg import (
    RUN_ID,
    iceberg_uri,
    load_table,
    open_catalog,
    partition_filter,
    published_run,
    snapshot_files,
)
from market_etl.stages.engines.duckdb_engine import run_duckdb_etl
from market_etl_devtools import bench_catalog, bench_pipeline
from market_etl_devtools.bench_etl import PARTITION, prepare_source
from market_etl_devtools.bench_catalog import DAYS, DayFileGenerator, symbol_month, write_day_file


def test_generated_day_file_has_the_statistics_of_a_real_one(tmp_path):
    lake = LocalLake(tmp_path / "lake")
    table = load_table(open_catalog(lake), lake, TRADES)
    partition, run = TradePartition("S0007USDT", "2024-04"), new_run_id()
    generator = DayFileGenerator(table, iceberg_uri(lake, write_day_file(lake.root, symbol_month(0), 1, run)))
    real = parquet_file_to_data_file(table.io, table.metadata,
                                     iceberg_uri(lake, write_day_file(lake.root, partition, 17, run)))
    generated = generator.data_file(iceberg_uri(lake, "").rstrip("/"), partition, 17, run)

    assert generated.file_path == real.file_path and generated.partition == real.partition
    assert set(generated.lower_bounds) == set(real.lower_bounds) == set(generated.upper_bounds)
    assert set(generated.value_counts) == set(real.value_counts)
    schema = table.schema()
    for name in ("year", "month", "day", "symbol"):
        field_id = schema.find_field(name).field_id
        assert generated.lower_bounds[field_id] == real.lower_bounds[field_id], name
        assert generated.upper_bounds[field_id] == real.upper_bounds[field_id], name
    time = schema.find_field("trade_time")
    day_start = int(dt.datetime(2024, 4, 17, tzinfo=dt.timezone.utc).timestamp()) * 10**6
    bounds = [from_bytes(time.field_type, b[time.field_id]) for b in (generated.lower_bounds, generated.upper_bounds,
                                                                       real.lower_bounds, real.upper_bounds)]
    assert all(day_start <= b < day_start + 86_400 * 10**6 for b in bounds), bounds
    assert generated.record_count == bench_catalog.ROWS_PER_DAY and generated.file_size_in_bytes > 0


@pytest.mark.parametrize("merge", ["false", "true"])  # load_table's setting, and the one it replaced
def test_catalog_bench_grows_a_table_shaped_like_real_publishes(tmp_path, merge):
    root = tmp_path / "lake"
    results = bench_catalog.run([5, 40], root=root, first_batch=10, retained_snapshots=[60], log=lambda _: None,
                                table_properties={"commit.manifest-merge.enabled": merge})

    *sizes, history = results
    assert [r["symbol_months"] for r in sizes] == [5, 40]
    for r in sizes:
        assert r["data_files"] == DAYS * r["symbol_months"]
        assert r["commit_new_month_s"] > 0 and r["commit_republish_s"] > 0
        assert r["plan_one_day_s"] > 0 and r["manifests"] >= 1 and r["metadata_json_bytes"] > 0
    # Then, with 60 snapshots retained, three more months published for real.
    assert history["retained_snapshots"] == 60 and history["symbol_months"] == 43
    assert history["snapshots"] >= 60 + 3 and history["commit_new_month_s"] > 0
    assert history["metadata_json_bytes"] > sizes[-1]["metadata_json_bytes"]
    if merge == "false":  # one manifest per symbol-month, as one commit per symbol-month leaves them
        assert [r["manifests"] for r in results] == [5, 40, 43]
    else:
        assert all(r["manifests"] < r["symbol_months"] / 3 for r in results[1:])
    lake = LocalLake(root)
    table = load_table(open_catalog(lake), lake, TRADES)
    files = snapshot_files(table)
    assert len(files) == 43 * DAYS and len({f.path for f in files}) == 43 * DAYS
    for i in range(43):  # every symbol-month: 30 day files, one per day, in its own partition directory
        partition = symbol_month(i)
        month = snapshot_files(table, row_filter=partition_filter(TRADES, partition))
        assert len(month) == DAYS, partition
        assert sorted(f.path.split("/day=")[1].split("/")[0] for f in month) == sorted(str(d) for d in range(1, 31))
        assert all(f"/symbol={partition.symbol}/" in f.path for f in month)
    # Generated and real files both prune on trade_time by their bounds: one day's instants, one file.
    for partition in (symbol_month(10), symbol_month(42)):  # generated, published for real
        start = dt.datetime(partition.year, partition.month_number, 15, tzinfo=dt.timezone.utc)
        day = And(EqualTo("symbol", partition.symbol),
                  GreaterThanOrEqual("trade_time", start.isoformat()),
                  LessThan("trade_time", (start + dt.timedelta(days=1)).isoformat()))
        [only] = snapshot_files(table, row_filter=day)
        assert "/day=15/" in only.path, partition
    # The republished symbol-month holds only its last real publish's files.
    republished = symbol_month(43 // 2)  # the last republish: from the middle of the table
    published = published_run(table, republished)
    assert published is not None
    assert all(published[RUN_ID] in f.path for f in snapshot_files(table, row_filter=partition_filter(
        TRADES, republished)))


def test_catalog_bench_writes_its_report(tmp_path):
    output = tmp_path / "catalog.md"
    output.write_text("# Catalog\n\nWhy it grows.\n")
    args = ["bench", "catalog", "--symbol-months", "4", "--retained-snapshots", "", "--output", str(output)]
    assert main(args) == 0
    assert main(args) == 0  # a second run replaces its section, and keeps the rest
    report = output.read_text()
    assert report.startswith("# Catalog\n\nWhy it grows.\n") and report.count("## Measured") == 1
    assert "load average" in report
    [row] = [line for line in report.splitlines() if line.startswith("| 4 |")]
    assert f"| {4 * DAYS} |" in row


def test_pipeline_bench_publishes_the_staged_version_its_etl_child_reported(tmp_path):
    lake_root, rows = prepare_source(310, tmp_path)
    lake = LocalLake(lake_root)
    reported = run_duckdb_etl(PARTITION, lake, run_id=new_run_id()).metadata
    later = run_duckdb_etl(PARTITION, lake, run_id=new_run_id(), force=True).metadata  # e.g. a leftover
    assert later["manifest_key"] > reported["manifest_key"]

    facts = bench_pipeline._work("catalog", lake_root, reported["manifest_key"])()

    assert facts["rows"] == rows and facts["files"] == 31
    published = published_run(load_table(open_catalog(lake), lake, TRADES), PARTITION)
    assert published[RUN_ID] == reported["run_id"]
