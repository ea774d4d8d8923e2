-- The trades table in Athena (Glue Data Catalog), over the processed zone's Hive-partitioned Parquet:
--   <lake>/processed/trades/year=2025/month=7/day=15/symbol=BTCUSDT/part-*.snappy.parquet
-- Column names and types must stay equal to market_etl.core.catalog.TRADES_COLUMNS and
-- TRADES_PARTITION_KEYS (a test parses this file and compares). Terraform creates the same table;
-- this file is the hand-run equivalent. Replace the LOCATION placeholder with the lake's processed/trades prefix.
--
-- No partition projection, on purpose: partitions are REGISTERED by the pipeline (Glue
-- BatchCreatePartition, market_etl/core/catalog.py) only after the partition's blocking checks
-- passed. Projection would make every partition directory in S3 queryable as soon as files land,
-- including a partition whose checks failed (docs/reliability.md case 24). See athena_repair_partitions.sql.

-- name: create_database
CREATE DATABASE IF NOT EXISTS market_data;

-- name: create_trades_table
CREATE EXTERNAL TABLE IF NOT EXISTS market_data.trades_binance (
  trade_id bigint,
  price decimal(18,8),
  quantity decimal(28,8),
  quote_qty decimal(28,8),
  trade_time timestamp,
  is_buyer_maker boolean,
  is_best_match boolean
)
PARTITIONED BY (year int, month int, day int, symbol string)
STORED AS PARQUET
LOCATION 's3://LAKE-BUCKET/LAKE-PREFIX/processed/trades/'
TBLPROPERTIES ('parquet.compression' = 'SNAPPY');
