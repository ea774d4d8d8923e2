# Glue Data Catalog: the database and the processed trades table that Athena
# queries (sql/ holds the queries; DuckDB plays this role locally).

resource "aws_glue_catalog_database" "market_data" {
  name        = local.glue_database_name
  description = "${var.project_name}: Binance market data (Parquet in s3://${local.bucket_name}/processed/)."
}

# Partitions: REGISTERED, not projected.
#
# The pipeline adds a partition (glue:BatchCreatePartition) only after the
# partition's blocking asset checks have passed, so a query sees a day only
# once it is validated, and a failed check leaves the catalog (and every
# query) as it was (RELIABILITY.md case 24). It also lets a re-run write a
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
