# Glue Data Catalog: the database, the processed trades table that Athena
# queries and the two analytics tables computed from it (sql/ holds the
# queries; DuckDB plays this role locally).

resource "aws_glue_catalog_database" "market_data" {
  name        = local.glue_database_name
  description = "${var.project_name}: Binance market data (Parquet in s3://${local.bucket_name}/processed/)."
}

# Partitions: REGISTERED, not projected.
#
# The pipeline adds a partition (glue:BatchCreatePartition) only after the
# partition's blocking asset checks have passed, so a query sees a day only
# once it is validated, and a failed check leaves the catalog (and every
# query) as it was (docs/reliability.md case 24). It also lets a re-run write a
# fresh prefix and then switch the partition's location (old-or-new for
# readers, case 17). Partition projection would instead make every
# year/month/day/symbol path visible the moment files land, validated or not,
# so it stays off: no projection.* table parameters.
resource "aws_glue_catalog_table" "trades_binance" {
  name          = local.glue_table_name
  database_name = aws_glue_catalog_database.market_data.name
  description   = "Binance spot trades, one row per trade; Hive layout year=YYYY/month=M/day=D/symbol=SYMBOL."
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    EXTERNAL              = "TRUE"
    classification        = "parquet"
    "parquet.compression" = "SNAPPY"
  }

  storage_descriptor {
    location      = "s3://${local.bucket_name}/${local.prefix_processed}trades/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      name                  = "parquet"
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters = {
        "serialization.format" = "1"
      }
    }

    # Column order and types are the Parquet schema the ETL writes
    # (decimal, not double: prices and quantities must add up exactly).
    columns {
      name    = "trade_id"
      type    = "bigint"
      comment = "Binance trade id, unique per symbol."
    }
    columns {
      name    = "price"
      type    = "decimal(18,8)"
      comment = "Trade price in the quote asset."
    }
    columns {
      name    = "quantity"
      type    = "decimal(28,8)"
      comment = "Traded quantity in the base asset."
    }
    columns {
      name    = "quote_qty"
      type    = "decimal(28,8)"
      comment = "price x quantity, in the quote asset."
    }
    columns {
      name    = "trade_time"
      type    = "timestamp"
      comment = "Trade time, UTC (written as TIMESTAMP_MICROS, not INT96)."
    }
    columns {
      name    = "is_buyer_maker"
      type    = "boolean"
      comment = "True when the buyer was the maker (the trade was a sell into a bid)."
    }
    columns {
      name    = "is_best_match"
      type    = "boolean"
      comment = "Binance's isBestMatch flag."
    }
  }

  partition_keys {
    name = "year"
    type = "int"
  }
  partition_keys {
    name = "month"
    type = "int"
  }
  partition_keys {
    name = "day"
    type = "int"
  }
  partition_keys {
    name = "symbol"
    type = "string"
  }
}

# Analytics tables: what the analytics assets compute with Athena from
# trades_binance (sql/athena_analytics.sql) and write with UNLOAD as Parquet.
#
# One partition per (year, month, symbol), REGISTERED like the trades table.
# Each materialisation UNLOADs into its own prefix
# analytics/<table>/year=Y/month=M/symbol=S/run-<id>/ (UNLOAD needs an empty
# location), then moves the partition's location to it and deletes the older
# runs: readers see one complete version, old or new. Projection would expose
# run prefixes half-written, so it stays off here too.
#
# Columns and types are the queries' result types in Athena (SUM of a
# decimal(p,8) is decimal(38,8), COUNT is bigint); they equal OHLCV_1M_COLUMNS
# and DAILY_TRADE_STATS_COLUMNS in market_etl/core/tables.py (tests compare).
resource "aws_glue_catalog_table" "ohlcv_1m" {
  name          = "ohlcv_1m"
  database_name = aws_glue_catalog_database.market_data.name
  description   = "1-minute OHLCV bars per symbol, one row per minute with trades; partitions year=YYYY/month=M/symbol=SYMBOL, each at the run prefix of its latest materialisation."
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    EXTERNAL              = "TRUE"
    classification        = "parquet"
    "parquet.compression" = "SNAPPY"
  }

  storage_descriptor {
    location      = "s3://${local.bucket_name}/${local.prefix_analytics}ohlcv_1m/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      name                  = "parquet"
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters = {
        "serialization.format" = "1"
      }
    }

    columns {
      name    = "bar_time"
      type    = "timestamp"
      comment = "Start of the minute, UTC."
    }
    columns {
      name    = "open"
      type    = "decimal(18,8)"
      comment = "Price of the minute's first trade (lowest trade id)."
    }
    columns {
      name    = "high"
      type    = "decimal(18,8)"
      comment = "Highest trade price in the minute."
    }
    columns {
      name    = "low"
      type    = "decimal(18,8)"
      comment = "Lowest trade price in the minute."
    }
    columns {
      name    = "close"
      type    = "decimal(18,8)"
      comment = "Price of the minute's last trade (highest trade id)."
    }
    columns {
      name    = "volume"
      type    = "decimal(38,8)"
      comment = "Traded quantity in the base asset."
    }
    columns {
      name    = "quote_volume"
      type    = "decimal(38,8)"
      comment = "Traded value in the quote asset."
    }
    columns {
      name    = "vwap"
      type    = "double"
      comment = "Volume-weighted average price."
    }
    columns {
      name    = "trades"
      type    = "bigint"
      comment = "Number of trades in the minute."
    }
    columns {
      name    = "buy_volume"
      type    = "decimal(38,8)"
      comment = "Taker-buy quantity (trades where the buyer was not the maker)."
    }
  }

  partition_keys {
    name = "year"
    type = "int"
  }
  partition_keys {
    name = "month"
    type = "int"
  }
  partition_keys {
    name = "symbol"
    type = "string"
  }
}

resource "aws_glue_catalog_table" "daily_trade_stats" {
  name          = "daily_trade_stats"
  database_name = aws_glue_catalog_database.market_data.name
  description   = "Per-day trade statistics per symbol; partitions year=YYYY/month=M/symbol=SYMBOL, each at the run prefix of its latest materialisation."
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    EXTERNAL              = "TRUE"
    classification        = "parquet"
    "parquet.compression" = "SNAPPY"
  }

  storage_descriptor {
    location      = "s3://${local.bucket_name}/${local.prefix_analytics}daily_trade_stats/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      name                  = "parquet"
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters = {
        "serialization.format" = "1"
      }
    }

    columns {
      name    = "trade_date"
      type    = "date"
      comment = "UTC calendar day."
    }
    columns {
      name    = "trades"
      type    = "bigint"
      comment = "Number of trades in the day."
    }
    columns {
      name    = "volume"
      type    = "decimal(38,8)"
      comment = "Traded quantity in the base asset."
    }
    columns {
      name    = "quote_volume"
      type    = "decimal(38,8)"
      comment = "Traded value in the quote asset."
    }
    columns {
      name    = "vwap"
      type    = "double"
      comment = "Volume-weighted average price."
    }
    columns {
      name    = "buy_volume"
      type    = "decimal(38,8)"
      comment = "Taker-buy quantity."
    }
    columns {
      name    = "sell_volume"
      type    = "decimal(38,8)"
      comment = "Taker-sell quantity."
    }
    columns {
      name    = "buy_trades"
      type    = "bigint"
      comment = "Number of taker-buy trades."
    }
    columns {
      name    = "sell_trades"
      type    = "bigint"
      comment = "Number of taker-sell trades."
    }
    columns {
      name    = "largest_trade_qty"
      type    = "decimal(28,8)"
      comment = "Largest single-trade quantity."
    }
    columns {
      name    = "largest_trade_quote_qty"
      type    = "decimal(28,8)"
      comment = "Largest single-trade value in the quote asset."
    }
    columns {
      name    = "first_trade_id"
      type    = "bigint"
      comment = "Lowest trade id of the day."
    }
    columns {
      name    = "last_trade_id"
      type    = "bigint"
      comment = "Highest trade id of the day."
    }
  }

  partition_keys {
    name = "year"
    type = "int"
  }
  partition_keys {
    name = "month"
    type = "int"
  }
  partition_keys {
    name = "symbol"
    type = "string"
  }
}
