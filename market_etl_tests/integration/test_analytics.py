"""Analytics assets and their checks, in real Dagster runs over a generated lake: bars and daily stats equal
Python's own computation; a re-run replaces only its partition, and finds an unchanged one up to date; a
deliberately inconsistent version fails its check on the audit branch and is never published; a failed
upstream check leaves the published table unchanged (case 24)."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from market_etl.core.keys import TradePartition, Zone, lake_key, new_run_id, staged_manifest_key
from market_etl.core.staged import StagedCheck, StagedFile, StagedVersion
from market_etl.core.tables import OHLCV_1M as OHLCV_1M_TABLE
from market_etl.core.sql import bind, get_query, partition_parameters
from market_etl.defs.analytics import build_analytics_assets
from market_etl.defs.keys import DAILY_TRADE_STATS, OHLCV_1M, PROCESSED_TRADES, TRADES_TABLE_ASSET
from market_etl.defs.partitions import partition_of, trade_partitions
from market_etl.lake import LocalLake
from market_etl.lake.duckdb_catalog import sql_string
from market_etl.lake.iceberg import (history, load_table, local_path, maintain, open_catalog, partition_filter,
                                     publish_audited, snapshot_files, stage_partition)
from market_etl.resources import sql as analytics_sql
from market_etl.resources.catalog import IcebergCatalogResource
from market_etl.resources.sql import DuckDBSqlEngine
from market_etl.settings import Settings
from market_etl_tests.lake_fixtures import (
    SourceTrade,
    assert_rows_equal,
    generate_trades,
    publish_partition,
    write_processed_partition,
)

BTC, ETH = TradePartition("BTCUSDT", "2025-07"), TradePartition("ETHUSDT", "2025-07")
PARTITIONS = trade_partitions(Settings(symbols=("BTCUSDT", "ETHUSDT"), first_month="2025-07"))
OHLCV_CHECKS = ("ohlc_consistent", "volume_reconciles", "minute_coverage")


@pytest.fixture
def lake(tmp_path) -> tuple[Path, dict[TradePartition, list[SourceTrade]]]:
    source = {p: generate_trades(p, range(1, 4), 250, seed=4) for p in (BTC, ETH)}
    for p, trades in source.items():
        write_processed_partition(tmp_path, p, trades)
        publish_partition(tmp_path, p)
    return tmp_path, source


def _run(root: Path, partition: TradePartition, assets=(), engine=None) -> dg.ExecuteInProcessResult:
    """One partition's run of every asset and check."""
    defs = dg.Definitions(assets=[*build_analytics_assets(PARTITIONS), *assets],
                          resources={"sql": engine or DuckDBSqlEngine(lake_url=str(root)),
                                     "catalog": IcebergCatalogResource(lake_url=str(root))})
    job = defs.resolve_implicit_global_asset_job_def()
    if not assets:  # the trades are published by the fixture: the analytics and their checks only
        job = job.get_subset(asset_selection={OHLCV_1M, DAILY_TRADE_STATS})
    return job.execute_in_process(partition_key=partition.dagster_key(), instance=dg.DagsterInstance.ephemeral(),
                                  raise_on_error=False)


def _checks(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.event_specific_data.asset_key.path[-1], e.event_specific_data.check_name): e.event_specific_data
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def _materialized(result) -> set[dg.AssetKey]:
    return {e.event_specific_data.materialization.asset_key for e in result.get_asset_materialization_events()}


def python_bars(trades: list[SourceTrade]) -> list[tuple]:
    minutes = defaultdict(list)
    for t in trades:
        minutes[t.trade_time.replace(tzinfo=None, second=0, microsecond=0)].append(t)
    bars = []
    for minute, ts in sorted(minutes.items()):
        ts.sort(key=lambda t: t.trade_id)
        volume = sum(t.quantity for t in ts)
        bars.append((minute, ts[0].price, max(t.price for t in ts), min(t.price for t in ts), ts[-1].price, volume,
                     sum(t.quote_qty for t in ts), float(sum(t.price * t.quantity for t in ts)) / float(volume),
                     len(ts), sum((t.quantity for t in ts if not t.is_buyer_maker), Decimal(0))))
    return bars


def python_daily_stats(trades: list[SourceTrade]) -> list[tuple]:
    days = defaultdict(list)
    for t in trades:
        days[t.trade_time.date()].append(t)
    stats = []
    for date, ts in sorted(days.items()):
        buys, sells = [t for t in ts if not t.is_buyer_maker], [t for t in ts if t.is_buyer_maker]
        volume = sum(t.quantity for t in ts)
        stats.append((date, len(ts), volume, sum(t.quote_qty for t in ts),
                      float(sum(t.price * t.quantity for t in ts)) / float(volume),
                      sum((t.quantity for t in buys), Decimal(0)), sum((t.quantity for t in sells), Decimal(0)),
                      len(buys), len(sells), max(t.quantity for t in ts), max(t.quote_qty for t in ts),
                      min(t.trade_id for t in ts), max(t.trade_id for t in ts)))
    return stats


OHLCV_COLUMNS = "bar_time, open, high, low, close, volume, quote_volume, vwap, trades, buy_volume"
STATS_COLUMNS = ("trade_date, trades, volume, quote_volume, vwap, buy_volume, sell_volume, buy_trades, sell_trades, "
                 "largest_trade_qty, largest_trade_quote_qty, first_trade_id, last_trade_id")


def _analytics(root: Path, table: str, columns: str, partition: TradePartition, order: str):
    sql = (f"SELECT {columns} FROM market_data.{table} WHERE year = :year AND month = :month AND symbol = :symbol "
           f"ORDER BY {order}")
    return DuckDBSqlEngine(lake_url=str(root)).query(bind(sql, partition_parameters(partition))).rows


def test_analytics_and_checks_materialise_and_equal_python(lake):
    root, source = lake
    result = _run(root, BTC)

    assert result.success
    assert _materialized(result) == {OHLCV_1M, DAILY_TRADE_STATS}
    checks = _checks(result)
    assert set(checks) == {*(("ohlcv_1m", c) for c in OHLCV_CHECKS), ("daily_trade_stats", "totals_reconcile")}
    assert all(c.passed for c in checks.values()), checks
    assert checks[("ohlcv_1m", "volume_reconciles")].metadata["source_trades"].value == 750

    bars = python_bars(source[BTC])
    assert_rows_equal(_analytics(root, "ohlcv_1m", OHLCV_COLUMNS, BTC, "bar_time"), bars)
    assert_rows_equal(_analytics(root, "daily_trade_stats", STATS_COLUMNS, BTC, "trade_date"),
                      python_daily_stats(source[BTC]))
    [ohlcv] = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
               if e.event_specific_data.materialization.asset_key == OHLCV_1M]
    assert ohlcv.metadata["uri"].value == _published_bars_file(root, BTC)
    assert ohlcv.metadata["rows"].value == len(bars) and ohlcv.metadata["snapshot_id"].value
    lake = LocalLake(root)
    [entry] = [h for h in history(load_table(open_catalog(lake), lake, OHLCV_1M_TABLE), BTC)
               if h.snapshot_id == int(ohlcv.metadata["snapshot_id"].value)]
    assert entry.dagster_run_id == result.run_id and entry.status == "current"


def test_a_re_run_replaces_only_its_own_partition_and_an_unchanged_one_is_up_to_date(lake, monkeypatch):
    root, source = lake
    assert _run(root, BTC).success and _run(root, ETH).success
    eth_dir = LocalLake(root).path(lake_key(Zone.ANALYTICS, ETH, dataset="ohlcv_1m"))
    eth_before = {p.name: p.read_bytes() for p in eth_dir.iterdir()}
    first = _published_bars_file(root, BTC)
    snapshots = _snapshot_count(root)

    unchanged = _run(root, BTC)  # neither the trades nor the SQL changed: nothing is written or committed
    assert unchanged.success
    assert {m.metadata["status"].value for m in _materializations(unchanged)} == {"up to date"}
    assert all(c.passed for c in _checks(unchanged).values()) and len(_checks(unchanged)) == 4
    assert _snapshot_count(root) == snapshots and _published_bars_file(root, BTC) == first

    monkeypatch.setattr(analytics_sql, "analytics_transform_version", lambda dataset: "edited")  # the SQL changed
    edited = _run(root, BTC)
    assert {m.metadata["status"].value for m in _materializations(edited)} == {"published"}
    monkeypatch.undo()

    trades = generate_trades(BTC, range(1, 4), 200, seed=5)  # BTCUSDT's trades are published anew
    write_processed_partition(root, BTC, trades)
    publish_partition(root, BTC)
    rebuilt = _run(root, BTC)

    assert rebuilt.success
    assert {m.metadata["status"].value for m in _materializations(rebuilt)} == {"published"}
    assert _published_bars_file(root, BTC) != first  # the table now holds the new run's file, alone
    assert_rows_equal(_analytics(root, "ohlcv_1m", OHLCV_COLUMNS, BTC, "bar_time"), python_bars(trades))
    assert {p.name: p.read_bytes() for p in eth_dir.iterdir()} == eth_before


def _materializations(result) -> list[dg.AssetMaterialization]:
    return [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]


def _snapshot_count(root: Path) -> int:
    lake = LocalLake(root)
    return len(load_table(open_catalog(lake), lake, OHLCV_1M_TABLE).snapshots())


def _published_bars_file(root: Path, partition: TradePartition) -> str:
    lake = LocalLake(root)
    [file] = snapshot_files(load_table(open_catalog(lake), lake, OHLCV_1M_TABLE),
                            row_filter=partition_filter(OHLCV_1M_TABLE, partition))
    return local_path(file.path)


class CorruptingSqlEngine(DuckDBSqlEngine):
    """Writes the bars as the engine does, then rewrites the file it wrote with `corruption`: a SELECT over its
    own rows (alias `bars`). Stands for an analytics query that went wrong; everything after the write is real."""

    corruption: str

    def write_analytics_files(self, dataset, partition, run):
        files = super().write_analytics_files(dataset, partition, run)
        if dataset == "ohlcv_1m":
            path = Path(files.uri)
            temp = path.with_name("rewritten")
            duckdb.execute(f"COPY (WITH bars AS (SELECT * FROM read_parquet({sql_string(str(path))}, hive_partitioning = false)) "
                           f"{self.corruption}) TO {sql_string(str(temp))} (FORMAT parquet)")
            temp.replace(path)
        return files


@pytest.mark.parametrize("corruption, failing", [
    # One bar whose low sits above its open.
    ("SELECT * REPLACE (CASE WHEN bar_time = (SELECT min(bar_time) FROM bars) THEN CAST(open + 1 AS DECIMAL(18, 8)) ELSE low END AS low) "
     "FROM bars", {"ohlc_consistent"}),
    # One bar lost: volume no longer adds up and a trading minute has no bar.
    ("SELECT * FROM bars WHERE bar_time <> (SELECT min(bar_time) FROM bars)", {"volume_reconciles", "minute_coverage"}),
])
def test_an_inconsistent_version_fails_its_check_before_anyone_can_read_it(lake, corruption, failing):
    """Write-audit-publish for analytics: the checks judge the audited snapshot; a failed blocking check
    leaves the published version (what every query reads) exactly as it was."""
    root, _ = lake
    assert _run(root, BTC).success
    published = _analytics(root, "ohlcv_1m", OHLCV_COLUMNS, BTC, "bar_time")
    trades = generate_trades(BTC, range(1, 4), 200, seed=6)  # new trades: the bars must be rebuilt
    write_processed_partition(root, BTC, trades)
    publish_partition(root, BTC)

    result = _run(root, BTC, engine=CorruptingSqlEngine(lake_url=str(root), corruption=corruption))

    assert not result.success
    checks = _checks(result)
    assert {name for (_, name), c in checks.items() if not c.passed} == failing
    for name in failing:
        assert checks[("ohlcv_1m", name)].metadata["failures"].value >= 1
        assert checks[("ohlcv_1m", name)].severity == dg.AssetCheckSeverity.ERROR
    assert OHLCV_1M not in {m.asset_key for m in _materializations(result)}
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "not published, blocking checks failed" in failure.event_specific_data.error.message
    # Readers see the version published before, exactly; the refused one is in history, never current.
    assert _analytics(root, "ohlcv_1m", OHLCV_COLUMNS, BTC, "bar_time") == published
    lake = LocalLake(root)
    table = load_table(open_catalog(lake), lake, OHLCV_1M_TABLE)
    refused = [h for h in history(table, BTC) if h.status == "staged-not-published"]
    assert {h.operation for h in refused} == {"delete", "append"}  # one version: its delete, then its add
    assert sum(h.rows_added for h in refused) == len(python_bars(trades)) - (0 if "REPLACE" in corruption else 1)
    assert set(table.metadata.refs) == {"main"}  # the audit branch is gone


def test_a_first_version_that_fails_its_check_leaves_the_table_empty(tmp_path):
    write_processed_partition(tmp_path, BTC, generate_trades(BTC, range(1, 3), 100, seed=7))
    publish_partition(tmp_path, BTC)
    engine = CorruptingSqlEngine(lake_url=str(tmp_path), corruption="SELECT * FROM bars LIMIT 1")

    assert not _run(tmp_path, BTC, engine=engine).success

    assert _analytics(tmp_path, "ohlcv_1m", OHLCV_COLUMNS, BTC, "bar_time") == []


def stand_in_processed_trades(root: Path):
    """processed/trades as the contract has it: staged files plus a manifest with the check outcomes; the
    blocking check fails for ETHUSDT."""
    @dg.asset(key=PROCESSED_TRADES, partitions_def=PARTITIONS, check_specs=[
        dg.AssetCheckSpec("rows_reconciled", asset=PROCESSED_TRADES, blocking=True)])
    def processed_trades(context):
        partition = partition_of(context)
        lake = LocalLake(root)
        paths = write_processed_partition(root, partition, generate_trades(partition, [1, 2], 40, seed=8))
        run = paths[0].name.split("-part-")[0]
        passed = partition.symbol != "ETHUSDT"
        files = tuple(StagedFile(str(p.relative_to(root)), 40, p.stat().st_size) for p in paths)
        version = StagedVersion(partition=partition, run_id=run, source_sha256="0" * 64, transform_version="1",
                                engine="test", trades_files=files, rejected_files=(), rows_in=80, rows_written=80,
                                rows_rejected=0, duplicates_removed=0,
                                checks=(StagedCheck("rows_reconciled", passed, True),))
        manifest_key = staged_manifest_key(partition, run)
        lake.put_bytes(manifest_key, version.to_json().encode())
        return dg.MaterializeResult(metadata={"manifest_key": manifest_key}, check_results=[dg.AssetCheckResult(
            check_name="rows_reconciled", passed=passed, severity=dg.AssetCheckSeverity.ERROR)])

    return processed_trades


def test_a_failed_upstream_check_leaves_the_published_table_unchanged(tmp_path):
    """Case 24 in Dagster: a stand-in processed/trades stages the partition, then its blocking check fails
    for ETHUSDT; the publish and analytics steps are skipped and queries see what they saw before."""
    processed_trades = stand_in_processed_trades(tmp_path)

    assert _run(tmp_path, BTC, assets=[processed_trades]).success
    engine = DuckDBSqlEngine(lake_url=str(tmp_path))
    before = engine.query(bind(get_query("trades_by_symbol"))).rows

    failed = _run(tmp_path, ETH, assets=[processed_trades])

    assert not failed.success
    assert _materialized(failed) == {PROCESSED_TRADES}  # ETHUSDT's staged files are in the lake ...
    assert engine.query(bind(get_query("trades_by_symbol"))).rows == before  # ... and invisible
    assert [r[0] for r in before] == ["BTCUSDT"]
    assert not LocalLake(tmp_path).path(lake_key(Zone.ANALYTICS, ETH, dataset="ohlcv_1m")).exists()


def test_publishing_a_version_whose_blocking_checks_failed_by_hand_is_refused(tmp_path):
    """Materialising market_data/trades_binance alone for ETHUSDT, whose staged version failed rows_reconciled."""
    processed_trades = stand_in_processed_trades(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=[*build_analytics_assets(PARTITIONS), processed_trades],
                          resources={"sql": DuckDBSqlEngine(lake_url=str(tmp_path)),
                                     "catalog": IcebergCatalogResource(lake_url=str(tmp_path))})
    job = defs.resolve_implicit_global_asset_job_def()
    staged = job.get_subset(asset_selection={PROCESSED_TRADES}).execute_in_process(
        partition_key=ETH.dagster_key(), instance=instance, raise_on_error=False)
    assert _materialized(staged) == {PROCESSED_TRADES}

    by_hand = job.get_subset(asset_selection={TRADES_TABLE_ASSET}).execute_in_process(
        partition_key=ETH.dagster_key(), instance=instance, raise_on_error=False)

    assert not by_hand.success
    [failure] = [e for e in by_hand.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "blocking checks failed: rows_reconciled" in failure.event_specific_data.error.message



def _audit(root: Path, partition: TradePartition):
    """Write and audit-branch one ohlcv_1m version, as build_analytics does before its checks."""
    engine, lake = DuckDBSqlEngine(lake_url=str(root)), LocalLake(root)
    files = engine.write_analytics_files("ohlcv_1m", partition, new_run_id())
    return stage_partition(open_catalog(lake), lake, OHLCV_1M_TABLE, partition, files.keys, {}, run_id=files.run_id)


def test_two_partitions_audited_at_once_both_land(lake):
    """ETHUSDT publishes while BTCUSDT's version is on its audit branch: main has moved, so BTCUSDT's
    replacement is applied to the new main (not a fast-forward, which would drop ETHUSDT's commit)."""
    root, source = lake
    btc, eth = _audit(root, BTC), _audit(root, ETH)
    catalog, local = open_catalog(LocalLake(root)), LocalLake(root)

    eth_commit = publish_audited(catalog, local, eth)
    btc_commit = publish_audited(catalog, local, btc)
    DuckDBSqlEngine(lake_url=str(root)).refresh_views(catalog)

    assert eth_commit.snapshot_id == eth.snapshot_id and btc_commit.snapshot_id != btc.snapshot_id
    for partition in (BTC, ETH):
        assert_rows_equal(_analytics(root, "ohlcv_1m", OHLCV_COLUMNS, partition, "bar_time"),
                          python_bars(source[partition]))
    table = load_table(catalog, local, OHLCV_1M_TABLE)
    [audited] = [h for h in history(table) if h.snapshot_id == btc.snapshot_id]
    assert (audited.status, audited.note) == ("published", f"applied to main as snapshot {btc_commit.snapshot_id}")
    assert set(table.metadata.refs) == {"main"}


def test_a_run_stopped_between_audit_and_publish_leaves_the_table_and_maintenance_drops_its_branch(lake):
    import datetime as dt

    root, source = lake
    assert _run(root, BTC).success
    published = _analytics(root, "ohlcv_1m", OHLCV_COLUMNS, BTC, "bar_time")
    write_processed_partition(root, BTC, generate_trades(BTC, range(1, 4), 100, seed=9))
    publish_partition(root, BTC)
    stopped = _audit(root, BTC)  # ... and the process ends here
    local = LocalLake(root)

    assert _analytics(root, "ohlcv_1m", OHLCV_COLUMNS, BTC, "bar_time") == published
    table = load_table(open_catalog(local), local, OHLCV_1M_TABLE)
    assert [h.note for h in history(table, BTC) if h.snapshot_id == stopped.snapshot_id] == [
        f"being audited on branch {stopped.branch}"]
    week = dt.timedelta(days=7)
    kept = maintain(open_catalog(local), local, OHLCV_1M_TABLE, retention=week, grace=dt.timedelta(days=3))
    assert kept.audit_branches_removed == 0  # within the grace period the run may still be auditing
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=8)
    report = maintain(open_catalog(local), local, OHLCV_1M_TABLE, retention=week, grace=dt.timedelta(days=3),
                      now=later)
    assert report.audit_branches_removed == 1 and report.files_deleted >= 1
    assert not local.path(stopped.file_keys[0]).exists()
    assert _analytics(root, "ohlcv_1m", OHLCV_COLUMNS, BTC, "bar_time") == published


def test_a_table_created_with_older_properties_gets_the_declared_ones_on_load(tmp_path):
    """Lakes built before a property changed (e.g. manifest merging, on at first) follow the code."""
    from market_etl.lake.iceberg import PROPERTIES_VERSION, declared_properties, iceberg_schema

    lake = LocalLake(tmp_path)
    table = load_table(open_catalog(lake), lake, OHLCV_1M_TABLE)
    with table.transaction() as tx:  # as the code that created it declared them then
        tx.set_properties({"commit.manifest-merge.enabled": "true", PROPERTIES_VERSION: "older"})
        tx.remove_properties("write.metadata.previous-versions-max")

    reloaded = load_table(open_catalog(lake), lake, OHLCV_1M_TABLE)

    declared = declared_properties(OHLCV_1M_TABLE, iceberg_schema(OHLCV_1M_TABLE))
    assert {k: reloaded.properties.get(k) for k in declared} == declared
    assert reloaded.properties["commit.manifest-merge.enabled"] == "false"
    # A property tuned by hand afterwards stays: the declaration did not change.
    with reloaded.transaction() as tx:
        tx.set_properties({"write.metadata.previous-versions-max": "10"})
    assert load_table(open_catalog(lake), lake, OHLCV_1M_TABLE).properties["write.metadata.previous-versions-max"] == "10"


def test_first_loads_racing_to_create_a_table_all_get_it(tmp_path):
    """Several runs publishing into a fresh lake at once: one creates the namespace and the table, the others
    (whose own creation collides in the SQL catalog) load what it made."""
    import threading

    lake = LocalLake(tmp_path)
    barrier, tables, errors = threading.Barrier(4), [], []

    def first_load():
        catalog = open_catalog(lake)
        barrier.wait()
        try:
            tables.append(load_table(catalog, lake, OHLCV_1M_TABLE).metadata.table_uuid)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=first_load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(tables) == 4 and len(set(tables)) == 1
