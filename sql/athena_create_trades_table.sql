-- The trades table as an Apache Iceberg table in Athena (engine v3) / the Glue Data Catalog.
-- The pipeline creates it itself, from the one declaration in market_etl/core/tables.py (pyiceberg's Glue
-- catalog, on first publish); this file is the hand-run equivalent, and a test keeps the two equal.
-- Replace the LOCATION placeholder with the lake's processed/trades prefix.
--
-- The partition columns are ordinary columns, stored inside every data file too; the table is
-- partitioned by them (identity). trade_time holds UTC instants: the code declares it Iceberg
-- `timestamptz`, which Athena shows as `timestamp(6) with time zone`.
--
-- No partition registration, no MSCK REPAIR, no partition projection: what a query reads is the
-- table's current snapshot, which changes only when market_data/trades_binance commits a version whose
-- blocking checks passed (write-audit-publish). Files in the table's directory that no snapshot lists
-- (a run whose checks failed, a run that lost a race) are invisible until maintenance deletes them.

-- name: create_database
CREATE DATABASE IF NOT EXISTS market_data;

-- name: create_trades_table
CREATE TABLE IF NOT EXISTS market_data.trades_binance (
  trade_id bigint,
  price decimal(18,8),
  quantity decimal(28,8),
  quote_qty decimal(28,8),
  trade_time timestamp,
  is_buyer_maker boolean,
  is_best_match boolean,
  year int,
  month int,
  day int,
  symbol string
)
PARTITIONED BY (year, month, day, symbol)
LOCATION 's3://LAKE-BUCKET/LAKE-PREFIX/processed/trades/'
TBLPROPERTIES ('table_type' = 'ICEBERG', 'format' = 'parquet', 'write_compression' = 'snappy');
