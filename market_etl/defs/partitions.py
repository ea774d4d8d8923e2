import dagster as dg

from market_etl.core.keys import TradePartition
from market_etl.settings import Settings


def trade_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    """symbol x month. Monthly partitions end at the last complete month: the latest Binance can have published."""
    return dg.MultiPartitionsDefinition({
        "symbol": dg.StaticPartitionsDefinition(list(settings.symbols)),
        "month": dg.MonthlyPartitionsDefinition(start_date=f"{settings.first_month}-01", timezone="UTC"),
    })


def partition_of(context: dg.AssetExecutionContext) -> TradePartition:
    """The run's partition, validated before it reaches any path, URL or key."""
    keys = context.partition_key.keys_by_dimension
    return TradePartition(symbol=keys["symbol"], month=keys["month"][:7])
