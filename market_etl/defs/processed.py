"""processed/trades: the Spark ETL stage as an asset (write + audit), with the checks the stage reports through Pipes."""

import os

import dagster as dg

from market_etl.core.tables import TRADES, TRADES_REJECTED
from market_etl.core.checks import CHECKS
from market_etl.core.keys import Zone, lake_key, new_run_id, staged_manifest_key
from market_etl.core.versions import TRANSFORM_VERSION
from market_etl.defs.automation import DOWNSTREAM_AUTOMATION
from market_etl.defs.keys import PROCESSED_TRADES, RAW_UNZIPPED_TRADES_CSV, SPARK_POOL
from market_etl.defs.partitions import partition_of
from market_etl.defs.table_metadata import dagster_metadata, table_metadata
from market_etl.resources import IcebergCatalogResource, LakeResource
from market_etl.resources.sql import SqlEngine
from market_etl.resources.stages import StageLauncher, partition_args
from market_etl.stages.etl import up_to_date


def processed_trades_metadata(lake_url: str | None) -> dict:
    """Definition metadata: the UI's columns tab, the table it is queried as and where its files live."""
    uri = None
    if lake_url:
        root = lake_url if "://" in lake_url else os.path.abspath(lake_url)
        uri = f"{root.rstrip('/')}/{lake_key(Zone.PROCESSED)}"
    return table_metadata(TRADES, uri)


def build_processed_assets(partitions_def: dg.PartitionsDefinition, reject_tolerance: float = 0.0,
                           retry_policy: dg.RetryPolicy | None = None,
                           lake_url: str | None = None) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=PROCESSED_TRADES,
        deps=[RAW_UNZIPPED_TRADES_CSV],
        partitions_def=partitions_def,
        group_name="lake",
        kinds={"spark", "parquet"},
        pool=SPARK_POOL,
        retry_policy=retry_policy,
        code_version=TRANSFORM_VERSION,
        metadata=processed_trades_metadata(lake_url),
        automation_condition=DOWNSTREAM_AUTOMATION,
        check_specs=[
            dg.AssetCheckSpec(check.name, asset=PROCESSED_TRADES, blocking=check.blocking,
                              description=check.description, partitions_def=partitions_def)
            for check in CHECKS
        ],
        description=(
            "A staged version of the symbol-month (write-audit-publish: written and audited, not yet visible): "
            "validated trades as Snappy Parquet under run-unique keys "
            "`processed/trades/year=/month=/day=/symbol=/<run>-part-N.snappy.parquet`: trade_id bigint, "
            "price decimal(18,8), quantity and quote_qty decimal(28,8) (the source digits, exactly), trade_time "
            "timestamp (UTC, microseconds), is_buyer_maker, is_best_match; each day file sorted by trade time. "
            "Built by the stage `market_etl.stages.etl` (the DuckDB engine locally, Spark on Glue; MARKET_ETL_ETL_ENGINE) "
            "from raw_unzipped/trades_csv: "
            "header and ms/us time unit detected per file, rows breaking a rule quarantined with their reason "
            "under `rejected/trades/symbol=/month=/`, exact duplicates removed and counted, conflicting duplicates "
            "fail the run. The manifest `processed/_staged/trades/symbol=/month=/<run>.json` lists the files and "
            "the checks' outcomes; market_data/trades_binance publishes it only if the blocking checks passed. "
            "The rejected lines are committed to market_data.trades_rejected (column `run`) either way."
        ),
    )
    def trades(context: dg.AssetExecutionContext, lake: LakeResource, stages: StageLauncher,
               catalog: IcebergCatalogResource, sql: SqlEngine):
        partition = partition_of(context)
        run_id = new_run_id()
        kept = up_to_date(lake.open(), partition, reject_tolerance) if stages.checks_up_to_date_in_process else None
        if kept is not None:
            # What the stage would report, without starting a process for it (~0.4 s a partition).
            context.log.info(f"{partition}: up to date ({kept.metadata['skipped_because']}); no stage launched")
            results = dg.MaterializeResult(
                metadata=dagster_metadata(kept.metadata), data_version=dg.DataVersion(kept.data_version),
                check_results=[dg.AssetCheckResult(check_name=c.name, passed=c.passed,
                                                   severity=dg.AssetCheckSeverity(c.severity),
                                                   metadata=dagster_metadata(c.metadata)) for c in kept.checks])
            manifest_key = kept.metadata["manifest_key"]
        else:
            args = (partition_args(partition) + lake.stage_args()
                    + ["--reject-tolerance", str(reject_tolerance), "--run-id", run_id,
                       "--dagster-run-id", context.run.run_id])
            results = stages.run(context, "etl", args).get_results()
            # A stage that found its input unchanged reports the manifest of the build it kept, not this run's.
            reported = next((r.metadata.get("manifest_key") for r in results
                             if isinstance(r, dg.MaterializeResult) and r.metadata), None)
            manifest_key = getattr(reported, "value", reported)
        if not manifest_key:
            raise dg.Failure(f"the ETL stage for {partition} reported no manifest_key (expected "
                             f"{staged_manifest_key(partition, run_id)}): its engine must report the manifest it wrote",
                             allow_retries=False)
        quarantine = catalog.record_quarantine(manifest_key, context.run.run_id)
        if quarantine is not None:
            sql.refresh_views(catalog.catalog(), (TRADES_REJECTED.name,))
            context.add_asset_metadata({"quarantine_snapshot_id": str(quarantine.snapshot_id)})
        return results

    return [trades]
