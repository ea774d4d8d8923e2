-- Partition maintenance for market_data.trades_binance, for operators. The pipeline does not run these.
--
-- Partitions are REGISTERED, neither projected nor discovered: the catalog asset
-- (market_data/trades_binance) adds a symbol-month's day partitions through Glue's
-- BatchCreatePartition only after processed/trades passed its blocking checks for that partition, so a
-- failed check leaves what queries see unchanged (docs/reliability.md case 24). Both alternatives break that:
--   * partition projection makes any directory under the table location queryable as soon as files land;
--   * MSCK REPAIR TABLE registers every partition directory it finds, checked or not (and lists the whole
--     prefix, which gets slow with years of symbol-days).
-- Re-materialising the catalog asset for a partition is the normal way to (re)register it.

-- name: show_partitions
SHOW PARTITIONS market_data.trades_binance;

-- name: add_partition_example
-- What the catalog asset does for one day, as DDL. Only for a partition whose checks passed.
ALTER TABLE market_data.trades_binance ADD IF NOT EXISTS
  PARTITION (year = 2025, month = 7, day = 15, symbol = 'BTCUSDT')
  LOCATION 's3://LAKE-BUCKET/LAKE-PREFIX/processed/trades/year=2025/month=7/day=15/symbol=BTCUSDT/';

-- name: drop_partition_example
-- Hides a day from every query (for example after a bad load was found), without deleting its files.
ALTER TABLE market_data.trades_binance DROP IF EXISTS
  PARTITION (year = 2025, month = 7, day = 15, symbol = 'BTCUSDT');

-- name: repair_from_storage
-- Disaster recovery only (catalog lost, lake intact): registers EVERY partition directory found, including
-- ones whose checks failed. Afterwards drop the partitions that Dagster shows as failed.
MSCK REPAIR TABLE market_data.trades_binance;
