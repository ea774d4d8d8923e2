"""The published table and the analytics computed from it, all symbol x month like the lake.

market_data/trades_binance is the publish step of write-audit-publish: materialising a partition
commits the staged version processed/trades wrote for it to the Iceberg table, in one transaction that
replaces exactly that symbol-month. It runs after processed/trades and its blocking checks in the same
run (a failed blocking check skips it), across runs its automation condition (DOWNSTREAM_AUTOMATION)
waits for those checks to pass, and by hand it refuses a version whose blocking checks failed.

The analytics assets do write, audit and publish in one step each (`SqlEngine.build_analytics`): their
checks are the asset's own and judge the version on its audit branch, before main moves to it.
"""

import dagster as dg

from market_etl.core.keys import TradePartition
from market_etl.core.tables import ANALYTICS_TABLES, TRADES
from market_etl.defs.automation import DOWNSTREAM_AUTOMATION
from market_etl.defs.keys import DAILY_TRADE_STATS, OHLCV_1M, PROCESSED_TRADES, TRADES_TABLE_ASSET
from market_etl.defs.partitions import partition_of
from market_etl.defs.table_metadata import table_metadata
from market_etl.lake.iceberg import RUN_ID, SOURCE_SHA256, PublishRefused
from market_etl.resources.catalog import IcebergCatalogResource
from market_etl.resources.sql import SqlEngine

# (asset, check name, check query in sql/athena_analytics.sql, description); every one blocking
ANALYTICS_CHECKS = (
    (OHLCV_1M, "ohlc_consistent", "check_ohlcv_1m_ohlc_consistent",
     "Every bar has low <= open <= high and low <= close <= high."),
    (OHLCV_1M, "volume_reconciles", "check_ohlcv_1m_volume_reconciles",
     "The bars' volume and trade count equal the sums over the partition's trades in the catalog, exactly."),
    (OHLCV_1M, "minute_coverage", "check_ohlcv_1m_minute_coverage",
     "One bar for every minute that had a trade: none missing, none extra, none duplicated."),
    (DAILY_TRADE_STATS, "totals_reconcile", "check_daily_trade_stats_totals_reconcile",
     "Daily rows add up to the partition's trades: trades, volume, buy + sell volume, one row per trading day."),
)


def _analytics_asset(key: dg.AssetKey, partitions_def: dg.PartitionsDefinition,
                     description: str) -> dg.AssetsDefinition:
    """Write-audit-publish in one step: the checks judge the audited snapshot before anyone can read it."""
    dataset = key.path[-1]
    checks = [(name, query, description) for asset, name, query, description in ANALYTICS_CHECKS if asset == key]

    @dg.asset(key=key, deps=[TRADES_TABLE_ASSET], partitions_def=partitions_def, group_name="analytics",
              kinds={"duckdb", "parquet"}, automation_condition=DOWNSTREAM_AUTOMATION, description=description,
              metadata=table_metadata(ANALYTICS_TABLES[dataset]),
              check_specs=[dg.AssetCheckSpec(name, asset=key, blocking=True, partitions_def=partitions_def,
                                             description=f"{text} Judged on the audited snapshot, before it is "
                                                         f"published (SQL: `{query}` in sql/athena_analytics.sql)")
                           for name, query, text in checks])
    def analytics(context: dg.AssetExecutionContext, sql: SqlEngine, catalog: IcebergCatalogResource):
        partition = partition_of(context)
        build = sql.build_analytics(dataset, partition, catalog.catalog(),
                                    [(name, query, True) for name, query, _ in checks], dagster_run_id=context.run.run_id)
        if build.status == "up to date":
            context.log.info(f"{dataset} {partition}: up to date ({build.reason}); skipped")
        for name, _, _ in checks:
            outcome = build.checks.get(name)
            yield dg.AssetCheckResult(
                check_name=name, passed=outcome.passed if outcome else True,
                metadata=outcome.metadata if outcome else {"status": "up to date", "skipped_because": build.reason})
        if build.status == "not published":
            raise dg.Failure(description=(
                f"{dataset} {partition} run {build.files.run_id}: not published, {build.reason}; the published "
                f"version is unchanged (history shows snapshot {build.audited.snapshot_id} as staged-not-published)"),
                metadata=build.metadata(), allow_retries=False)
        yield dg.MaterializeResult(metadata=build.metadata())

    return analytics


def staged_manifest_of(context: dg.AssetExecutionContext, partition: TradePartition) -> str:
    """The manifest to publish: the one processed/trades wrote in this run, else its latest materialisation's."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PROCESSED_TRADES, asset_partitions=[context.partition_key]), limit=100,
    ).records
    if not records:
        raise dg.Failure(f"nothing staged for {partition}: materialise processed/trades for it first",
                         allow_retries=False)
    record = next((r for r in records if r.run_id == context.run.run_id), records[0])
    entry = record.asset_materialization.metadata.get("manifest_key") if record.asset_materialization else None
    if entry is None:
        raise dg.Failure(f"the latest processed/trades materialisation of {partition} (run {record.run_id}) names "
                         "no staged manifest: materialise processed/trades again", allow_retries=False)
    return entry.value


def build_analytics_assets(partitions_def: dg.PartitionsDefinition) -> list:
    @dg.asset(
        key=TRADES_TABLE_ASSET,
        deps=[PROCESSED_TRADES],
        partitions_def=partitions_def,
        group_name="catalog",
        kinds={"iceberg", "duckdb", "glue"},
        metadata=table_metadata(TRADES),
        automation_condition=DOWNSTREAM_AUTOMATION,
        description=(
            "The Apache Iceberg table `market_data.trades_binance` (identity partitions year/month/day/symbol). "
            "Materialising a partition publishes the staged version processed/trades wrote for it (its manifest, "
            "named in the upstream materialisation): one Iceberg commit deletes the symbol-month's files and "
            "adds the new ones, metadata only. Refused when a blocking check of that version failed, or when a "
            "newer run's version is already published; commit conflicts are retried. The snapshot's summary "
            "records the Dagster run, the run id, the partition and the source archive's sha256."
        ),
    )
    def trades_binance(context: dg.AssetExecutionContext, sql: SqlEngine,
                       catalog: IcebergCatalogResource) -> dg.MaterializeResult:
        partition = partition_of(context)
        manifest_key = staged_manifest_of(context, partition)
        try:
            commit = catalog.publish(manifest_key, context.run.run_id)
        except PublishRefused as refused:
            raise dg.Failure(description=str(refused), allow_retries=False) from refused
        if commit.already_published:
            context.log.info(f"{partition}: run {commit.properties.get(RUN_ID)} is published already "
                             f"(snapshot {commit.snapshot_id}); nothing to commit")
            views = {"status": "up to date",
                     "skipped_because": f"snapshot {commit.snapshot_id} publishes this staged version already"}
        else:
            views = {"status": "published", **sql.refresh_views(catalog.catalog(), (TRADES.name,))}
        return dg.MaterializeResult(metadata={
            **commit.metadata(), "snapshot_id": str(commit.snapshot_id), "manifest_key": manifest_key,
            "run_id": commit.properties.get(RUN_ID),
            "source_sha256": commit.properties.get(SOURCE_SHA256), **views})

    ohlcv_1m = _analytics_asset(OHLCV_1M, partitions_def, (
        "1-minute bars per symbol-month: open/high/low/close, volume, quote volume, VWAP, trade count and "
        "taker-buy volume, one row per minute with trades. SQL `ohlcv_1m` (sql/athena_analytics.sql) over "
        "market_data.trades_binance, written as Parquet to analytics/ohlcv_1m/ and queryable as "
        "market_data.ohlcv_1m."
    ))
    daily_trade_stats = _analytics_asset(DAILY_TRADE_STATS, partitions_def, (
        "Per-day trade statistics per symbol-month: trades, volume, VWAP, taker buy/sell split, largest "
        "trade, first/last trade id. SQL `daily_trade_stats` over market_data.trades_binance, written to "
        "analytics/daily_trade_stats/ and queryable as market_data.daily_trade_stats."
    ))
    return [trades_binance, ohlcv_1m, daily_trade_stats]
