"""processed/trades: the Spark ETL stage as an asset, with the checks the stage reports through Pipes."""

import os

import dagster as dg

from market_etl.core.catalog import TRADES
from market_etl.core.checks import CHECKS
from market_etl.core.keys import Zone, lake_key
from market_etl.core.versions import TRANSFORM_VERSION
from market_etl.defs.automation import DOWNSTREAM_AUTOMATION
from market_etl.defs.keys import PROCESSED_TRADES, RAW_UNZIPPED_TRADES_CSV, SPARK_POOL
from market_etl.defs.partitions import partition_of
from market_etl.defs.table_metadata import table_metadata
from market_etl.resources import LakeResource
from market_etl.resources.stages import StageLauncher, partition_args


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
            "Validated trades as Snappy Parquet, `processed/trades/year=/month=/day=/symbol=/`: trade_id bigint, "
            "price decimal(18,8), quantity and quote_qty decimal(28,8) (the source digits, exactly), trade_time "
            "timestamp (UTC, microseconds), is_buyer_maker, is_best_match; each day file sorted by trade time. "
            "Built by the Spark stage `market_etl.stages.etl` (local Spark or a Glue job) from raw_unzipped/trades_csv: "
            "header and ms/us time unit detected per file, rows breaking a rule quarantined with their reason "
            "under `rejected/trades/symbol=/month=/`, exact duplicates removed and counted, conflicting duplicates "
            "fail the run. A re-run replaces exactly this symbol-month's days; a failed run leaves the previous "
            "version in place."
        ),
    )
    def trades(context: dg.AssetExecutionContext, lake: LakeResource, stages: StageLauncher):
        args = partition_args(partition_of(context)) + lake.stage_args() + ["--reject-tolerance", str(reject_tolerance)]
        return stages.run(context, "etl", args).get_results()

    return [trades]
