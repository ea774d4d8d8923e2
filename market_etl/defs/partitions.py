import dagster as dg

from market_etl.core.keys import TradePartition
from market_etl.settings import Settings


def trade_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    """symbol x month. Monthly partitions end at the last complete month: the latest Binance can have published."""
    return dg.MultiPartitionsDefinition({
        "symbol": dg.StaticPartitionsDefinition(list(settings.symbols)),
        "month": dg.MonthlyPartitionsDefinition(start_date=f"{settings.first_month}-01", timezone="UTC"),
    })


def stage_retry_policy(settings: Settings) -> dg.RetryPolicy:
    """Step retries of every stage asset (download, unzip, ETL; a Glue job on aws): exponential backoff with
    jitter, so partitions failed by one Glue or network incident do not all come back at the same second.
    A stage that ran and reported its own error is not retried (see `market_etl.resources.stages.stage_errors`)."""
    return dg.RetryPolicy(max_retries=settings.stage_retries, delay=settings.stage_retry_delay_seconds,
                          backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def partition_of(context: dg.AssetExecutionContext) -> TradePartition:
    """The run's partition, validated before it reaches any path, URL or key."""
    keys = context.partition_key.keys_by_dimension
    return TradePartition(symbol=keys["symbol"], month=keys["month"][:7])
