"""Write-audit-publish on the Iceberg tables, with bad input and faults (real Spark, real pyiceberg catalogs).

The ETL stage (`run_etl`) writes a staged version; `publish_staged` commits it. Every scenario asserts what
readers see through the project's own DuckDB engine (views over the current snapshot) running the
original design's three queries verbatim.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest

from market_etl.core.keys import TradePartition, Zone, lake_key
from market_etl.core.sql import bind, get_query, parameters_for
from market_etl.core.staged import StagedVersion
from market_etl.core.tables import TRADES, TRADES_REJECTED
from market_etl.lake import LocalLake
from market_etl.lake.iceberg import (
    PublishRefused,
    StaleVersion,
    load_table,
    open_catalog,
    publish_staged,
    record_quarantine,
    rollback,
    snapshot_files,
)
from market_etl.resources.sql import DuckDBSqlEngine
from market_etl.stages.etl import run_etl
from market_etl.table_cli import history_rows
from market_etl_devtools.mirror.generate import Defects, generate_month

JULY = TradePartition("BTCUSDT", "2025-07")
ETH_JULY = TradePartition("ETHUSDT", "2025-07")
PER_DAY = 20
THREE_QUERIES = ("trades_by_symbol", "vwap_1m", "order_flow_by_symbol")


@pytest.fixture
def lake(tmp_path):
    return LocalLake(tmp_path / "lake")


def put_source(lake, partition, mirror: Path, defects=None, seed=1):
    """A Binance-format month where raw_unzipped/trades_csv puts it, with its archive's sha256 recorded."""
    generated = generate_month(mirror, partition.symbol, partition.month, PER_DAY, seed=seed, defects=defects)
    key = lake_key(Zone.RAW_UNZIPPED, partition)
    with zipfile.ZipFile(generated.zip_path) as archive, archive.open(generated.csv_name) as member, \
            lake.writer(key) as out:
        shutil.copyfileobj(member, out, 1 << 20)
    lake.write_meta(key, {"source_sha256": hashlib.sha256(Path(generated.zip_path).read_bytes()).hexdigest()})


def stage(spark, lake, partition, mirror, **kw):
    put_source(lake, partition, mirror, **kw)
    return run_etl(spark, partition, lake).metadata["manifest_key"]


def publish(lake, manifest_key):
    catalog = open_catalog(lake)
    commit = publish_staged(catalog, lake, manifest_key, "dagster-run")
    record_quarantine(catalog, lake, manifest_key, "dagster-run")
    DuckDBSqlEngine(lake_url=str(lake.root)).refresh_views(catalog)
    return commit


def three_queries(lake, as_of=None) -> dict:
    engine = DuckDBSqlEngine(lake_url=str(lake.root))
    values = parameters_for(symbol=JULY.symbol, date="2025-07-15")
    out = {}
    for name in THREE_QUERIES:
        query = get_query(name)
        out[name] = engine.query(bind(query, {k: v for k, v in values.items() if k in query.parameters}),
                                 as_of=as_of).rows
    return out


def trades_table(lake):
    return load_table(open_catalog(lake), lake, TRADES)


def published_runs(lake) -> set[str]:
    return {Path(f.path).name.split("-part-")[0] for f in snapshot_files(trades_table(lake))}


def test_published_version_is_what_the_three_queries_read_with_partition_pruning(spark, lake, tmp_path):
    manifest = stage(spark, lake, JULY, tmp_path / "mirror")
    DuckDBSqlEngine(lake_url=str(lake.root)).refresh_views(open_catalog(lake))
    assert three_queries(lake)["trades_by_symbol"] == []  # staged is not published
    commit = publish(lake, manifest)
    assert commit.files_added == 31 and commit.rows_added == 31 * PER_DAY
    result = three_queries(lake)
    assert result["trades_by_symbol"][0][:2] == ("BTCUSDT", 31 * PER_DAY)
    engine = DuckDBSqlEngine(lake_url=str(lake.root))
    vwap = engine.query(bind(get_query("vwap_1m"), parameters_for(symbol="BTCUSDT", date="2025-07-15")))
    assert (vwap.files_scanned, vwap.files_total) == (1, 31)  # one day's file of the month's 31


def test_republished_archive_with_bad_rows_is_refused_and_readers_see_the_good_version(spark, lake, tmp_path):
    good = stage(spark, lake, JULY, tmp_path / "good")
    publish(lake, good)
    before = three_queries(lake)

    bad = stage(spark, lake, JULY, tmp_path / "bad", defects=Defects(bad_values=3), seed=2)
    catalog = open_catalog(lake)
    with pytest.raises(PublishRefused, match=r"blocking checks failed: .*positive_"):
        publish_staged(catalog, lake, bad, "dagster-run-2")
    record_quarantine(catalog, lake, bad, "dagster-run-2")  # what processed/trades does either way
    DuckDBSqlEngine(lake_url=str(lake.root)).refresh_views(catalog)

    assert three_queries(lake) == before
    bad_run = bad.rsplit("/", 1)[1][:-len(".json")]
    quarantine = DuckDBSqlEngine(lake_url=str(lake.root)).query(bind(
        "SELECT reason, count(*) FROM market_data.trades_rejected WHERE run = '" + bad_run + "' GROUP BY reason"))
    assert sum(n for _, n in quarantine.rows) == 3
    assert all(reason.endswith(("_not_positive", "_missing", "_not_decimal", "_malformed")) or reason
               for reason, _ in quarantine.rows)
    history = history_rows(trades_table(lake), lake, TRADES.name, JULY)
    staged = [h for h in history if h["status"] == "staged-not-published"]
    assert [h["run_id"] for h in staged] == [bad_run]
    assert "blocking checks failed" in staged[0]["note"]


def test_two_materialisations_of_one_partition_leave_exactly_one_whole_version(spark, lake, tmp_path):
    # The barrier: both runs have written (and audited) before either publishes.
    first = stage(spark, lake, JULY, tmp_path / "a", seed=1)
    second = stage(spark, lake, JULY, tmp_path / "b", seed=3)
    outcomes = {}

    def go(key):
        try:
            outcomes[key] = publish_staged(open_catalog(lake), lake, key, key)
        except StaleVersion as stale:
            outcomes[key] = stale

    threads = [threading.Thread(target=go, args=(k,)) for k in (second, first)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = published_runs(lake)
    assert len(runs) == 1
    winner = runs.pop()
    assert winner in second  # the newer run's version, whichever committed first
    files = snapshot_files(trades_table(lake))
    assert len(files) == 31 and sum(f.rows for f in files) == 31 * PER_DAY  # no day lost
    assert isinstance(outcomes[first], (StaleVersion,)) or outcomes[first].snapshot_id is not None


def test_two_partitions_committing_at_once_both_land(spark, lake, tmp_path):
    manifests = [stage(spark, lake, p, tmp_path / p.symbol) for p in (JULY, ETH_JULY)]
    load_table(open_catalog(lake), lake, TRADES)  # created once, before the race
    barrier = threading.Barrier(2)
    commits = []

    def go(key):
        barrier.wait()
        commits.append(publish_staged(open_catalog(lake), lake, key, key))

    threads = [threading.Thread(target=go, args=(k,)) for k in manifests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(commits) == 2
    files = snapshot_files(trades_table(lake))
    assert len(files) == 62 and sum(f.rows for f in files) == 62 * PER_DAY


def test_rollback_then_query_returns_the_previous_rows_exactly(spark, lake, tmp_path):
    publish(lake, stage(spark, lake, JULY, tmp_path / "a", seed=1))
    previous = trades_table(lake).current_snapshot().snapshot_id
    v1 = three_queries(lake)
    publish(lake, stage(spark, lake, JULY, tmp_path / "b", seed=4))
    assert three_queries(lake) != v1
    assert three_queries(lake, as_of=str(previous)) == v1  # time travel, before any rollback
    table = trades_table(lake)
    rollback(table, previous)
    DuckDBSqlEngine(lake_url=str(lake.root)).refresh_views(open_catalog(lake))
    assert three_queries(lake) == v1


KILLER = textwrap.dedent('''
    import sys, time
    from pyiceberg.catalog.sql import SqlCatalog
    from market_etl.lake import LocalLake
    from market_etl.lake.iceberg import publish_staged, open_catalog

    # Test harness: pause inside the catalog commit (metadata file written, catalog pointer not yet moved)
    original = SqlCatalog.commit_table
    def slow_commit(self, *args, **kwargs):
        print("committing", flush=True)
        time.sleep(60)
        return original(self, *args, **kwargs)
    if sys.argv[3] == "during":
        SqlCatalog.commit_table = slow_commit
    lake = LocalLake(sys.argv[1])
    publish_staged(open_catalog(lake), lake, sys.argv[2], "killed")
''')


@pytest.mark.parametrize("when", ["before", "during"])
def test_process_killed_before_or_during_the_commit_leaves_the_published_version(spark, lake, tmp_path, when):
    publish(lake, stage(spark, lake, JULY, tmp_path / "a", seed=1))
    before, runs = three_queries(lake), published_runs(lake)
    manifest = stage(spark, lake, JULY, tmp_path / "b", seed=5)
    if when == "during":
        script = tmp_path / "killer.py"
        script.write_text(KILLER)
        proc = subprocess.Popen([sys.executable, str(script), str(lake.root), manifest, when], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "committing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # "before": the stage wrote files and manifest, and nothing published them (the process died).
    assert published_runs(lake) == runs and three_queries(lake) == before
    publish(lake, manifest)  # the re-run publishes normally
    assert published_runs(lake) != runs and three_queries(lake) != before


def test_one_dagster_run_stages_audits_and_publishes_then_a_bad_republish_stops_before_publishing(lake, tmp_path):
    """processed/trades -> market_data/trades_binance in real Dagster runs (the stage as a subprocess)."""
    import dagster as dg

    from market_etl.defs.analytics import build_analytics_assets
    from market_etl.defs.keys import TRADES_TABLE_ASSET as TRADES_TABLE
    from market_etl.defs.partitions import trade_partitions
    from market_etl.defs.processed import PROCESSED_TRADES, build_processed_assets
    from market_etl.resources import IcebergCatalogResource, LakeResource
    from market_etl.resources.stages import LocalStageLauncher
    from market_etl.settings import Settings

    partitions = trade_partitions(Settings(lake=lake.url, symbols=(JULY.symbol,), first_month=JULY.month))
    assets = [*build_processed_assets(partitions), *[a for a in build_analytics_assets(partitions)
                                                     if set(a.keys) == {TRADES_TABLE}]]
    resources = {"lake": LakeResource(url=lake.url), "stages": LocalStageLauncher(),
                 "catalog": IcebergCatalogResource(lake_url=lake.url), "sql": DuckDBSqlEngine(lake_url=lake.url)}

    def materialize(instance):
        return dg.materialize(assets, partition_key=JULY.dagster_key(), instance=instance, resources=resources,
                              raise_on_error=False)

    with dg.instance_for_test() as instance:
        put_source(lake, JULY, tmp_path / "good")
        good = materialize(instance)
        assert good.success
        [published] = [e.materialization for e in good.get_asset_materialization_events()
                       if e.asset_key == TRADES_TABLE]
        [staged] = [e.materialization for e in good.get_asset_materialization_events()
                    if e.asset_key == PROCESSED_TRADES]
        table = trades_table(lake)
        assert published.metadata["snapshot_id"].value == str(table.current_snapshot().snapshot_id)
        assert published.metadata["run_id"].value == staged.metadata["run_id"].value
        summary = table.current_snapshot().summary
        assert summary["market-etl.dagster-run-id"] == good.run_id
        assert summary["market-etl.source-sha256"] == staged.metadata["source_sha256"].value
        before = three_queries(lake)

        # Nothing changed: both steps are up to date, the ETL stage is not even launched, and the checks of the
        # kept version are reported again; no new snapshot.
        again = materialize(instance)
        assert again.success
        statuses = {e.asset_key: e.materialization.metadata["status"].value
                    for e in again.get_asset_materialization_events()}
        assert statuses == {PROCESSED_TRADES: "up to date", TRADES_TABLE: "up to date"}
        [kept] = [e.materialization for e in again.get_asset_materialization_events() if e.asset_key == PROCESSED_TRADES]
        assert kept.metadata["manifest_key"].value == staged.metadata["manifest_key"].value
        assert kept.metadata["rows_per_day"].value.records  # the typed values, as the stage reported them
        checks = again.get_asset_check_evaluations()
        assert len(checks) == len(good.get_asset_check_evaluations()) and all(c.passed for c in checks)
        logs = [r.user_message for r in instance.all_logs(again.run_id)]
        assert not any(m.startswith("stage etl:") for m in logs) and any("no stage launched" in m for m in logs)
        assert trades_table(lake).current_snapshot().snapshot_id == table.current_snapshot().snapshot_id

        put_source(lake, JULY, tmp_path / "bad", defects=Defects(bad_values=2), seed=6)
        bad = materialize(instance)
        assert not bad.success  # the blocking check failed: the publish step did not run
        assert {e.asset_key for e in bad.get_asset_materialization_events()} == {PROCESSED_TRADES}
        assert three_queries(lake) == before
        assert trades_table(lake).current_snapshot().snapshot_id == table.current_snapshot().snapshot_id


def test_maintenance_expires_old_snapshots_and_never_deletes_a_file_the_current_snapshot_references(
        spark, lake, tmp_path):
    import datetime as dt

    from market_etl.lake.iceberg import maintain

    old_version = stage(spark, lake, JULY, tmp_path / "a", seed=1)
    publish(lake, old_version)
    loser = stage(spark, lake, JULY, tmp_path / "b", seed=2)  # staged, never published: an orphan
    publish(lake, stage(spark, lake, JULY, tmp_path / "c", seed=3))
    table = trades_table(lake)
    current_files = {f.path for f in snapshot_files(table)}
    before = three_queries(lake)
    loser_files = [lake.path(f.key) for f in StagedVersion.from_json(lake.get_bytes(loser)).trades_files]

    # Within the grace period nothing unreferenced goes; nothing is old enough to expire either.
    kept = maintain(open_catalog(lake), lake, TRADES, retention=dt.timedelta(days=7), grace=dt.timedelta(days=3))
    assert (kept.snapshots_expired, kept.files_deleted) == (0, 0) and kept.unreferenced_in_grace == 31
    assert all(p.exists() for p in loser_files)

    # "A week later": every snapshot but the current one expires, and every file no snapshot lists goes.
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=8)
    report = maintain(open_catalog(lake), lake, TRADES, retention=dt.timedelta(days=7), grace=dt.timedelta(days=3),
                      now=later)
    table = trades_table(lake)
    # Three snapshots: the first append, then the second publish's delete and append (the current one).
    assert report.snapshots_expired == 2 and len(table.snapshots()) == 1
    assert report.files_deleted == 62 and report.bytes_deleted > 0  # the first version and the loser
    assert not any(p.exists() for p in loser_files)
    assert {f.path for f in snapshot_files(table)} == current_files
    assert all(Path(local).exists() for local in (f[len("file://"):] for f in current_files))
    assert three_queries(lake) == before


def test_as_of_a_time_reads_every_table_as_it_was_then(spark, lake, tmp_path):
    import datetime as dt

    DuckDBSqlEngine(lake_url=str(lake.root)).refresh_views(open_catalog(lake))
    before_anything = dt.datetime.now(dt.timezone.utc).isoformat()
    time.sleep(0.01)
    publish(lake, stage(spark, lake, JULY, tmp_path / "a", seed=1))
    v1 = three_queries(lake)
    after_v1 = dt.datetime.now(dt.timezone.utc).isoformat()
    time.sleep(0.01)
    publish(lake, stage(spark, lake, JULY, tmp_path / "b", seed=7))
    assert three_queries(lake, as_of=after_v1) == v1 != three_queries(lake)
    assert three_queries(lake, as_of=before_anything)["trades_by_symbol"] == []
