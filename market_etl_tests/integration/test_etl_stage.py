"""The ETL stage end to end on real Spark (docs/reliability.md cases 16-23).

Most scenarios call the stage's `run_etl` on the test session's one SparkSession (seconds each); three
need their own processes: a run killed mid-write (`python -m market_etl.stages.etl`, SIGKILL), its re-run,
and a Dagster run through PipesSubprocessClient that shows the checks landing on the partition.
"""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market_etl.core.checks import CHECKS
from market_etl.core.keys import RUN_ID_PATTERN, TradePartition, Zone, lake_key
from market_etl.core.staged import StagedVersion
from market_etl.core.trades import SchemaDrift, SourceError
from market_etl.defs.partitions import trade_partitions
from market_etl.defs.keys import PROCESSED_TRADES
from market_etl.defs.processed import build_processed_assets
from market_etl.stages.etl import MAX_SPLIT_BYTES, clear, run_etl, split_bytes
from market_etl.lake import LocalLake
from market_etl_devtools.mirror.generate import Defects, generate_month
from market_etl.resources import IcebergCatalogResource, LakeResource
from market_etl.resources.sql import DuckDBSqlEngine
from market_etl.resources.stages import LocalStageLauncher
from market_etl.settings import Settings

JULY = TradePartition("BTCUSDT", "2025-07")
AUGUST = TradePartition("BTCUSDT", "2025-08")
ETH_JULY = TradePartition("ETHUSDT", "2025-07")
TRADES_PER_DAY = 40
MONTH_US = {JULY: (1751328000 * 10**6, 1754006400 * 10**6)}


@pytest.fixture
def lake(tmp_path):
    return LocalLake(tmp_path / "lake")


def put_source(lake, partition, mirror: Path, trades_per_day=TRADES_PER_DAY, defects=None, seed=1):
    """Generate a Binance-format month and place its CSV where raw_unzipped/trades_csv puts it."""
    generated = generate_month(mirror, partition.symbol, partition.month, trades_per_day, seed=seed, defects=defects)
    with zipfile.ZipFile(generated.zip_path) as archive, archive.open(generated.csv_name) as member, \
            lake.writer(lake_key(Zone.RAW_UNZIPPED, partition)) as out:
        shutil.copyfileobj(member, out, 1 << 20)
    return generated


def source_lines(lake, partition) -> list[str]:
    lines = lake.get_bytes(lake_key(Zone.RAW_UNZIPPED, partition)).decode().splitlines()
    return lines[1:] if not lines[0][0].isdigit() else lines


def tree(lake, prefix) -> dict[str, str]:
    """Every object under `prefix` with the sha256 of its bytes."""
    return {o.key: hashlib.sha256(lake.get_bytes(o.key)).hexdigest() for o in lake.list(prefix)}


def latest_manifest(lake, partition) -> StagedVersion:
    prefix = f"processed/_staged/trades/symbol={partition.symbol}/month={partition.month}/"
    manifests = [o.key for o in lake.list(prefix)
                 if RUN_ID_PATTERN.fullmatch(o.key[len(prefix):].removesuffix(".json"))]  # not the sidecars
    return StagedVersion.from_json(lake.get_bytes(max(manifests)))


def processed_files(lake, partition) -> list[Path]:
    """The data files of the partition's latest staged version (what a publish would commit)."""
    return sorted(lake.path(f.key) for f in latest_manifest(lake, partition).trades_files)


def read_back(lake, partition, *, time_unit="us", bools=("True", "False")) -> list[str]:
    """The processed rows, formatted as Binance writes them: 8 decimals, times in the source unit."""
    lines = []
    for path in processed_files(lake, partition):
        table = pq.read_table(path)
        micros = table.column("trade_time").cast(pa.int64()).to_pylist()
        assert micros == sorted(micros), f"{path} is not sorted by trade_time"
        for row, us in zip(table.to_pylist(), micros):
            time_text = str(us if time_unit == "us" else us // 1000)
            lines.append(",".join([str(row["trade_id"]), f"{row['price']:.8f}", f"{row['quantity']:.8f}",
                                   f"{row['quote_qty']:.8f}", time_text, bools[not row["is_buyer_maker"]],
                                   bools[not row["is_best_match"]]]))
    return lines


def expected_reason(line: str, partition=JULY) -> str | None:
    """An oracle independent of the Spark rules, for the generator's kinds of bad rows."""
    fields = line.split(",")
    time_us = int(fields[4]) * (1000 if len(fields[4]) == 13 else 1)
    start, end = MONTH_US[partition]
    if not start <= time_us < end:
        return "trade_time_outside_month"
    for index, name in ((1, "price"), (2, "quantity")):
        if fields[index] == "":
            return f"{name}_missing"
        if Decimal(fields[index]) <= 0:
            return f"{name}_not_positive"
    return None


def checks_of(result) -> dict:
    return {c.name: c for c in result.checks}


# ---------------------------------------------------------------- cases 16, 18: idempotent, siblings untouched


def test_each_run_stages_its_own_files_leaving_other_runs_and_siblings_alone(spark, lake, tmp_path):
    for sibling in (AUGUST, ETH_JULY):
        put_source(lake, sibling, tmp_path / "mirror")
        run_etl(spark, sibling, lake)
    put_source(lake, JULY, tmp_path / "mirror")
    first = run_etl(spark, JULY, lake)
    before = tree(lake, "processed/")
    rows_first = sorted(read_back(lake, JULY))

    second = run_etl(spark, JULY, lake)
    after = tree(lake, "processed/")
    assert {k: v for k, v in after.items() if k in before} == before  # nothing written before was touched
    new = set(after) - set(before)
    assert new and all(second.metadata["run_id"] in k for k in new)  # every new key is the new run's own
    assert len([k for k in new if k.endswith(".parquet")]) == 31
    assert sorted(read_back(lake, JULY)) == rows_first  # same input -> the same rows
    assert second.metadata["rows_written"] == first.metadata["rows_written"] == 31 * TRADES_PER_DAY
    assert not list(lake.list(lake_key(Zone.TEMP) + "/"))
    manifest = latest_manifest(lake, JULY)
    assert manifest.run_id == second.metadata["run_id"] and manifest.publishable
    assert {c.name for c in manifest.checks} == {c.name for c in CHECKS}

    # Upstream republishes July without its last day: the new version has 30 days.
    lines = source_lines(lake, JULY)
    lake.put_bytes(lake_key(Zone.RAW_UNZIPPED, JULY), ("\n".join(lines[:30 * TRADES_PER_DAY]) + "\n").encode())
    third = run_etl(spark, JULY, lake)
    assert third.metadata["days_written"] == 30
    # What the UI shows for the month: 30 days of rows, the 31st at 0 rows.
    assert third.metadata["dagster/row_count"] == third.metadata["rows_written"] == 30 * TRADES_PER_DAY
    per_day = dict(third.metadata["rows_per_day"].rows)
    assert len(per_day) == 31 and per_day["2025-07-31"] == 0 and sum(per_day.values()) == 30 * TRADES_PER_DAY
    assert all(rows for day, rows in per_day.items() if day != "2025-07-31")
    assert third.metadata["days_without_rows"] == 1
    assert not any("/day=31/" in str(p) for p in processed_files(lake, JULY))


def test_nothing_is_redone_when_source_and_transform_are_unchanged_and_a_new_source_rebuilds(
        spark, lake, tmp_path, monkeypatch):
    def put_archive(mirror, seed):  # as raw_unzipped/trades_csv leaves it: the CSV and its archive's sha256
        generated = put_source(lake, JULY, mirror, seed=seed)
        digest = hashlib.sha256(Path(generated.zip_path).read_bytes()).hexdigest()
        lake.write_meta(lake_key(Zone.RAW_UNZIPPED, JULY), {"source_sha256": digest})

    put_archive(tmp_path / "a", seed=1)
    first = run_etl(spark, JULY, lake)
    before = tree(lake, "")
    second = run_etl(spark, JULY, lake)
    assert (first.metadata["status"], second.metadata["status"]) == ("built", "up to date")
    assert first.metadata["run_id"] in second.metadata["skipped_because"]
    assert second.metadata["manifest_key"] == first.metadata["manifest_key"]
    assert second.data_version == first.data_version is not None
    assert [(c.name, c.passed) for c in second.checks] == [(c.name, c.passed) for c in first.checks]
    assert second.metadata["rows_written"] == first.metadata["rows_written"] == 31 * TRADES_PER_DAY
    assert tree(lake, "") == before  # nothing written, nothing moved

    # The stage entry point decides before it starts a JVM.
    monkeypatch.setenv("MARKET_ETL_ETL_ENGINE", "spark")
    from market_etl.stages import etl

    args = etl.stage_arguments(["--symbol", "BTCUSDT", "--month", "2025-07", "--lake", str(lake.root)])
    staged = etl.run_stage(args)
    assert staged.metadata["status"] == "up to date" and "jvm_start_seconds" not in staged.metadata
    assert tree(lake, "") == before

    put_archive(tmp_path / "b", seed=2)  # upstream republished the month
    third = run_etl(spark, JULY, lake)
    assert third.metadata["status"] == "built" and third.data_version != first.data_version
    assert third.metadata["run_id"] != first.metadata["run_id"] and latest_manifest(lake, JULY).run_id == \
        third.metadata["run_id"]


def test_staged_files_hold_the_partition_columns_constant_per_file(spark, lake, tmp_path):
    """What lets the catalog take each file's partition from its statistics: year, month, day, symbol inside."""
    put_source(lake, JULY, tmp_path / "mirror")
    run_etl(spark, JULY, lake)
    for path in processed_files(lake, JULY):
        table = pq.read_table(path)
        day = int(str(path).split("/day=")[1].split("/")[0])
        assert table.column_names[-4:] == ["year", "month", "day", "symbol"]
        assert {(r["year"], r["month"], r["day"], r["symbol"]) for r in table.select(
            ["year", "month", "day", "symbol"]).to_pylist()} == {(2025, 7, day, "BTCUSDT")}
        assert str(table.schema.field("trade_time").type) == "timestamp[us, tz=UTC]"
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "SNAPPY"


# ---------------------------------------------------------------- cases 19, exact values


@pytest.mark.parametrize("defects, time_unit, bools", [
    (Defects(), "us", ("True", "False")),
    (Defects(time_unit="ms", header=True, lowercase_bools=True), "ms", ("true", "false")),
])
def test_every_value_reads_back_as_its_source_text(spark, lake, tmp_path, defects, time_unit, bools):
    put_source(lake, JULY, tmp_path / "mirror", defects=defects)
    result = run_etl(spark, JULY, lake)
    assert result.metadata["time_unit"] == time_unit and result.metadata["header"] is defects.header
    source = source_lines(lake, JULY)
    assert sorted(read_back(lake, JULY, time_unit=time_unit, bools=bools)) == sorted(source)
    assert all(c.passed for c in result.checks)


# ---------------------------------------------------------------- cases 20, 21, 23: quarantine, dedupe, checks


def test_bad_rows_are_quarantined_duplicates_removed_and_the_checks_fail_as_they_should(spark, lake, tmp_path):
    defects = Defects(duplicates=3, out_of_order=3, id_gaps=2, outside_month=4, bad_values=6, header=True)
    generated = put_source(lake, JULY, tmp_path / "mirror", defects=defects)
    result = run_etl(spark, JULY, lake)
    m, checks = result.metadata, checks_of(result)

    source = source_lines(lake, JULY)
    reasons = {line: expected_reason(line) for line in source}
    rejected = [line for line, reason in reasons.items() if reason]
    valid_ids = {int(line.split(",")[0]) for line, reason in reasons.items() if not reason}
    assert len(rejected) == 10 and m["rows_in"] == generated.rows == len(source)
    assert (m["rows_rejected"], m["duplicates_removed"]) == (10, 3)
    assert m["rows_written"] == len(valid_ids) == m["rows_in"] - 10 - 3
    assert m["rejected_by_reason"] == {"trade_time_outside_month": 4, "price_missing": 1, "price_not_positive": 2,
                                       "quantity_missing": 1, "quantity_not_positive": 2}

    written = read_back(lake, JULY)
    assert sorted(int(line.split(",")[0]) for line in written) == sorted(valid_ids)  # deduplicated, none lost
    assert set(written) <= set(source)

    [quarantine_file] = latest_manifest(lake, JULY).rejected_files
    quarantine = pq.read_table(lake.path(quarantine_file.key)).to_pylist()
    assert {(r["symbol"], r["month"], r["run"]) for r in quarantine} == {("BTCUSDT", "2025-07", m["run_id"])}
    assert sorted((r["line"], r["reason"]) for r in quarantine) == sorted((line, reasons[line]) for line in rejected)
    assert {r["rule"] for r in quarantine} == {"trade_time_in_month", "price_present", "price_positive",
                                               "quantity_present", "quantity_positive"}

    assert not checks["valid_trade_dates"].passed and checks["valid_trade_dates"].metadata["rows_rejected"] == 4
    assert not checks["positive_prices"].passed and not checks["positive_quantities"].passed
    offending = checks["positive_prices"].metadata["first_offending_ids"]
    assert offending == sorted(int(line.split(",")[0]) for line in rejected if "price" in reasons[line])
    assert checks["well_formed_rows"].passed
    # Readable: rule, rows, share as a markdown table, then up to 5 of the quarantined source lines.
    summary = checks["positive_prices"].metadata["summary"]
    assert "| `price_not_positive` | 2 |" in summary and "| `price_missing` | 1 |" in summary
    price_lines = sorted((line for line in rejected if "price" in reasons[line]), key=lambda l: int(l.split(",")[0]))
    assert price_lines[0] in summary and summary.count("\n", summary.index("```")) == len(price_lines) + 1
    assert "| `trade_time_outside_month` | 4 |" in m["quarantine"]
    assert checks["rows_reconciled"].passed and checks["rows_reconciled"].metadata["unaccounted"] == 0
    missing = [i for i in range(min(valid_ids), max(valid_ids) + 1) if i not in valid_ids]
    contiguity = checks["trade_ids_contiguous"]
    assert not contiguity.passed and contiguity.severity == "WARN"
    assert contiguity.metadata["missing_ids"] == len(missing)
    assert contiguity.metadata["gaps"] == len([i for i in missing if i - 1 not in missing])


def test_quarantined_rows_within_the_tolerance_pass_their_check(spark, lake, tmp_path):
    put_source(lake, JULY, tmp_path / "mirror", defects=Defects(bad_values=3))
    checks = checks_of(run_etl(spark, JULY, lake, reject_tolerance=0.01))
    # bad_values cycles zero, negative and empty prices first: three price rows, 3 / 1240 < 1%.
    assert checks["positive_prices"].passed and checks["positive_prices"].metadata["rows_rejected"] == 3


def test_conflicting_duplicates_fail_loudly_and_keep_the_previous_version(spark, lake, tmp_path):
    put_source(lake, JULY, tmp_path / "mirror")
    run_etl(spark, JULY, lake)
    before = tree(lake, "processed/")
    generated = put_source(lake, JULY, tmp_path / "bad", defects=Defects(conflicting_duplicates=2))
    with pytest.raises(SourceError, match=r"2 trade id\(s\) appear with different values, e\.g\. \d+, \d+"):
        run_etl(spark, JULY, lake)
    assert generated.counts["conflicting_duplicates"] == 2
    assert tree(lake, "processed/") == before
    assert not list(lake.list(lake_key(Zone.TEMP) + "/"))


def test_mixed_time_units_fail_and_publish_nothing(spark, lake, tmp_path):
    put_source(lake, JULY, tmp_path / "mirror", defects=Defects(mixed_units=True))
    with pytest.raises(SourceError, match="mixed time units"):
        run_etl(spark, JULY, lake)
    assert not list(lake.list("processed/")) and not list(lake.list("rejected/"))


# ---------------------------------------------------------------- case 22: schema drift


@pytest.mark.parametrize("first_line, column", [
    ("id,price,qty,quote_qty,time,is_buyer_maker", "is_best_match"),
    ("id,price,qty,quote_qty,time,is_buyer_maker,is_best_match,is_liquidation", "is_liquidation"),
    ("4359935386,93576.00000000,0.00136000,127.26336000,1751328000010866,True,True,1", "column 8"),
])
def test_schema_drift_fails_naming_the_column_and_writes_nothing(spark, lake, first_line, column):
    lake.put_bytes(lake_key(Zone.RAW_UNZIPPED, JULY), (first_line + "\n").encode())
    with pytest.raises(SchemaDrift, match=column):
        run_etl(spark, JULY, lake)
    assert not list(lake.list("processed/"))


def test_the_entry_point_fails_on_drift_before_starting_spark(lake, tmp_path):
    lake.put_bytes(lake_key(Zone.RAW_UNZIPPED, JULY), b"id,price,qty,quote_qty,time,is_buyer_maker\n1,2,3,4,5,True\n")
    stage = _stage(lake, JULY, tmp_path / "drift.log")
    assert stage.wait(timeout=300) != 0
    output = (tmp_path / "drift.log").read_text()
    assert "SchemaDrift" in output and "missing column(s) is_best_match" in output
    assert "Setting default log level" not in output  # Spark's first words: no JVM was started


# ---------------------------------------------------------------- staging on both lake kinds (no Spark)


def test_moving_a_file_to_its_staged_key_on_both_lake_kinds(any_lake):
    """How the stage gives Spark's output its run-unique key: a rename locally, a server-side copy on S3."""
    scratch = "temp/trades/symbol=BTCUSDT/month=2025-07/x"
    any_lake.put_bytes(f"{scratch}/_day=3/part-00002-1f2e-c000.snappy.parquet", b"new-a")
    any_lake.move(f"{scratch}/_day=3/part-00002-1f2e-c000.snappy.parquet", "processed/trades/k.parquet")
    assert any_lake.get_bytes("processed/trades/k.parquet") == b"new-a"
    assert not list(any_lake.list(scratch + "/"))
    clear(any_lake, scratch)


# ---------------------------------------------------------------- case 17: killed mid-write


def _stage(lake, partition, log: Path) -> subprocess.Popen:
    # The Spark engine: these cases are its staged swap (the DuckDB engine stages run-unique files instead).
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "MARKET_ETL_ETL_ENGINE": "spark"}
    command = [sys.executable, "-m", "market_etl.stages.etl", "--symbol", partition.symbol, "--month",
               partition.month, "--lake", lake.url]
    # Own process group: the kill takes the stage's JVM with it, as a lost Glue worker would.
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def test_a_run_killed_mid_write_leaves_the_previous_version_and_the_rerun_is_exact(spark, lake, tmp_path):
    put_source(lake, JULY, tmp_path / "mirror")
    run_etl(spark, JULY, lake)
    previous = tree(lake, "processed/")
    put_source(lake, JULY, tmp_path / "big", trades_per_day=20_000, seed=2)  # ~620k rows: seconds of writing

    staging = lake.path(lake_key(Zone.TEMP, JULY))
    process = _stage(lake, JULY, tmp_path / "killed.log")
    deadline = time.monotonic() + 240
    while not any(staging.rglob("*.parquet")):
        assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the stage never started writing"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert tree(lake, "processed/") == previous  # killed while writing: nothing of it is visible

    rerun = _stage(lake, JULY, tmp_path / "rerun.log")
    assert rerun.wait(timeout=600) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    assert sorted(read_back(lake, JULY)) == sorted(source_lines(lake, JULY))
    # The re-run cleared its own scratch; the killed run's is in the temp zone, which expires.
    assert not lake.path(f"{lake_key(Zone.TEMP, JULY)}/{latest_manifest(lake, JULY).run_id}").exists()


# ---------------------------------------------------------------- through Dagster: checks on the partition


def test_dagster_run_reports_the_checks_on_the_partition_and_a_failed_error_check_blocks_downstream(lake, tmp_path):
    put_source(lake, JULY, tmp_path / "mirror", defects=Defects(bad_values=3))
    partitions = trade_partitions(Settings(lake=lake.url, symbols=(JULY.symbol,), first_month=JULY.month))
    [processed] = build_processed_assets(partitions)

    @dg.asset(key=["analytics", "after_processed"], deps=[PROCESSED_TRADES], partitions_def=partitions)
    def downstream() -> None:
        raise AssertionError("must not run after a failed blocking check")

    with dg.instance_for_test() as instance:
        result = dg.materialize([processed, downstream], partition_key=JULY.dagster_key(), instance=instance,
                                resources={"lake": LakeResource(url=lake.url), "stages": LocalStageLauncher(),
                                           "catalog": IcebergCatalogResource(lake_url=lake.url),
                                           "sql": DuckDBSqlEngine(lake_url=lake.url)},
                                raise_on_error=False)
        assert not result.success
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert set(evaluations) == {c.name for c in CHECKS}
        assert {e.partition for e in evaluations.values()} == {JULY.dagster_key()}
        failed = evaluations["positive_prices"]
        assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
        assert failed.metadata["rows_rejected"].value == 3
        assert evaluations["rows_reconciled"].passed and evaluations["valid_trade_dates"].passed
        [materialization] = [e.materialization for e in result.get_asset_materialization_events()
                             if e.asset_key == PROCESSED_TRADES]
        assert materialization.partition == JULY.dagster_key()
        assert materialization.metadata["rows_rejected"].value == 3
        # Dagster's standard keys and the readable values arrive typed, not as text or JSON.
        assert materialization.metadata["dagster/row_count"].value == 31 * TRADES_PER_DAY - 3
        assert [c.name for c in materialization.metadata["dagster/column_schema"].schema.columns][:2] == [
            "trade_id", "price"]
        assert isinstance(materialization.metadata["rows_per_day"], dg.TableMetadataValue)
        assert isinstance(materialization.metadata["quarantine"], dg.MarkdownMetadataValue)
        assert isinstance(failed.metadata["summary"], dg.MarkdownMetadataValue)
        assert materialization.metadata["publishable"].value is False
        assert materialization.metadata["quarantine_snapshot_id"].value  # the audit's record is queryable
        assert instance.get_materialized_partitions(PROCESSED_TRADES) == {JULY.dagster_key()}
        assert not instance.get_materialized_partitions(dg.AssetKey(["analytics", "after_processed"]))


@pytest.mark.parametrize("source_bytes, cores, tasks", [
    (2_309_078_267, 2, 18),  # the 30M-row benchmark month: 18 equal tasks, not 17 and a sliver
    (300 * 2**20, 2, 4), (300 * 2**20, 4, 4), (5 * 2**20, 2, 1), (10 * 2**30, 8, 80)])
def test_splits_fill_whole_rounds_of_equal_tasks(source_bytes, cores, tasks):
    size = split_bytes(source_bytes, cores)
    assert size <= MAX_SPLIT_BYTES and -(-source_bytes // size) == tasks
