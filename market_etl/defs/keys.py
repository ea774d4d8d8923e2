"""Every asset key and concurrency pool name of the code location, declared once.

(Lake object keys, the paths inside the lake, are `market_etl.core.keys`; these are Dagster's names.)
"""

import dagster as dg

#: raw/: Binance's monthly archive, SHA-256-verified.
RAW_TRADES_ZIP = dg.AssetKey(["raw", "trades_zip"])
#: raw_unzipped/: the archive's CSV member.
RAW_UNZIPPED_TRADES_CSV = dg.AssetKey(["raw_unzipped", "trades_csv"])
#: processed/: validated Parquet written by the ETL stage.
PROCESSED_TRADES = dg.AssetKey(["processed", "trades"])
#: The published Iceberg table queries read (`market_data.trades_binance`, declared in
#: `market_etl.core.tables`); this asset publishes staged versions into it.
TRADES_TABLE_ASSET = dg.AssetKey(["market_data", "trades_binance"])
#: analytics/: computed from the catalog table.
OHLCV_1M = dg.AssetKey(["analytics", "ohlcv_1m"])
DAILY_TRADE_STATS = dg.AssetKey(["analytics", "daily_trade_stats"])

#: Downloads from Binance at once (limit: MARKET_ETL_DOWNLOAD_CONCURRENCY, set by `market-etl init-home`).
DOWNLOAD_POOL = "binance_download"
#: Unzips at once (limit: MARKET_ETL_UNZIP_CONCURRENCY locally, the Glue jobs' concurrency on aws).
UNZIP_POOL = "unzip"
#: One Spark stage at a time: a local Spark session wants every core (limit set by `market-etl init-home`).
SPARK_POOL = "spark"
