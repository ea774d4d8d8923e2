"""The catalog table and the analytics computed from it, all symbol x month like the lake.

The catalog asset is partitioned too: materialising a partition registers exactly that symbol-month,
which is what makes "only checked partitions are queryable" hold. It runs after processed/trades and
its blocking checks in the same run (a failed blocking check skips it), and across runs its automation
condition (DOWNSTREAM_AUTOMATION) waits for those checks to pass.
"""

import dagster as dg

from market_etl.core.catalog import TRADES, analytics_table
from market_etl.core.sql import check_outcome
from market_etl.defs.automation import DOWNSTREAM_AUTOMATION
from market_etl.defs.keys import DAILY_TRADE_STATS, OHLCV_1M, PROCESSED_TRADES, TRADES_TABLE_ASSET
from market_etl.defs.partitions import partition_of
from market_etl.defs.table_metadata import table_metadata
from market_etl.resources.sql import SqlEngine

# (asset, check name, check query in sql/athena_analytics.sql, description)
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
    dataset = key.path[-1]

    @dg.asset(key=key, deps=[TRADES_TABLE_ASSET], partitions_def=partitions_def, group_name="analytics",
              kinds={"duckdb", "parquet"}, automation_condition=DOWNSTREAM_AUTOMATION, description=description,
              metadata=table_metadata(analytics_table(dataset)))
    def analytics(context: dg.AssetExecutionContext, sql: SqlEngine) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=sql.write_analytics(dataset, partition_of(context)).metadata())

    return analytics


def _sql_check(asset: dg.AssetKey, name: str, query_name: str, description: str,
               partitions_def: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=name, blocking=True, partitions_def=partitions_def,
                    description=f"{description} (SQL: `{query_name}` in sql/athena_analytics.sql)")
    def check(context: dg.AssetCheckExecutionContext, sql: SqlEngine) -> dg.AssetCheckResult:
        outcome = check_outcome(sql.run_named(query_name, partition_of(context)))
        return dg.AssetCheckResult(passed=outcome.passed, metadata=outcome.metadata)

    return check


def build_analytics_assets(partitions_def: dg.PartitionsDefinition) -> list:
    @dg.asset(
        key=TRADES_TABLE_ASSET,
        deps=[PROCESSED_TRADES],
        partitions_def=partitions_def,
        group_name="catalog",
        kinds={"duckdb", "glue"},
        metadata=table_metadata(TRADES),
        automation_condition=DOWNSTREAM_AUTOMATION,
        description=(
            "The processed trades as the SQL table `market_data.trades_binance` (year/month/day/symbol "
            "partitions). Materialising a partition registers that symbol-month's files: a DuckDB view in "
            "the lake's catalog file locally, Glue partitions on AWS. Only partitions whose blocking checks "
            "passed are registered, so a failed check leaves what queries see unchanged."
        ),
    )
    def trades_binance(context: dg.AssetExecutionContext, sql: SqlEngine) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=sql.register_trades_partition(partition_of(context)))

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
    checks = [_sql_check(asset, name, query, description, partitions_def)
              for asset, name, query, description in ANALYTICS_CHECKS]
    return [trades_binance, ohlcv_1m, daily_trade_stats, *checks]
