-- The analytics assets and their checks, in Athena's dialect, computed from the catalog.
-- Each analytics query computes one symbol-month; the analytics assets write its result as Parquet to
-- <lake>/analytics/<name>/year=Y/month=M/symbol=S/ and register it as market_data.<name>.
-- Each check query returns one row; its `failures` column must be 0, the other columns become metadata.
-- Same format and parameters as athena_sample_queries.sql; any of these runs by name from the CLI.

-- name: ohlcv_1m
-- 1-minute bars for one symbol-month: one row per minute that had at least one trade (no empty bars).
-- Open/close are the first/last trade of the minute by trade id. buy_volume is taker-buy volume.
SELECT date_trunc('minute', trade_time) AS bar_time,
       min_by(price, trade_id) AS open,
       MAX(price) AS high,
       MIN(price) AS low,
       max_by(price, trade_id) AS close,
       SUM(quantity) AS volume,
       SUM(quote_qty) AS quote_volume,
       CAST(SUM(price * quantity) AS DOUBLE) / CAST(SUM(quantity) AS DOUBLE) AS vwap,
       COUNT(*) AS trades,
       SUM(CASE WHEN is_buyer_maker THEN 0 ELSE quantity END) AS buy_volume
FROM market_data.trades_binance
WHERE year = :year AND month = :month AND symbol = :symbol
GROUP BY date_trunc('minute', trade_time)
ORDER BY bar_time;

-- name: daily_trade_stats
-- Per-day statistics for one symbol-month: trades, volume, VWAP, taker buy/sell split, largest trade,
-- first and last trade id.
SELECT CAST(trade_time AS DATE) AS trade_date,
       COUNT(*) AS trades,
       SUM(quantity) AS volume,
       SUM(quote_qty) AS quote_volume,
       CAST(SUM(price * quantity) AS DOUBLE) / CAST(SUM(quantity) AS DOUBLE) AS vwap,
       SUM(CASE WHEN is_buyer_maker THEN 0 ELSE quantity END) AS buy_volume,
       SUM(CASE WHEN is_buyer_maker THEN quantity ELSE 0 END) AS sell_volume,
       COUNT(*) FILTER (WHERE NOT is_buyer_maker) AS buy_trades,
       COUNT(*) FILTER (WHERE is_buyer_maker) AS sell_trades,
       MAX(quantity) AS largest_trade_qty,
       MAX(quote_qty) AS largest_trade_quote_qty,
       MIN(trade_id) AS first_trade_id,
       MAX(trade_id) AS last_trade_id
FROM market_data.trades_binance
WHERE year = :year AND month = :month AND symbol = :symbol
GROUP BY CAST(trade_time AS DATE)
ORDER BY trade_date;

-- name: check_ohlcv_1m_ohlc_consistent
-- Every bar has low <= open <= high and low <= close <= high.
SELECT COUNT(*) AS bars,
       COUNT(*) FILTER (WHERE NOT (low <= open AND open <= high AND low <= close AND close <= high)) AS failures
FROM market_data.ohlcv_1m
WHERE year = :year AND month = :month AND symbol = :symbol;

-- name: check_ohlcv_1m_volume_reconciles
-- The bars' volume and trade count equal the sums over the partition's trades in the catalog, exactly.
WITH bars AS (
  SELECT COALESCE(SUM(volume), 0) AS volume, COALESCE(SUM(trades), 0) AS trades
  FROM market_data.ohlcv_1m
  WHERE year = :year AND month = :month AND symbol = :symbol
), source AS (
  SELECT COALESCE(SUM(quantity), 0) AS volume, COUNT(*) AS trades
  FROM market_data.trades_binance
  WHERE year = :year AND month = :month AND symbol = :symbol
)
SELECT bars.volume AS bar_volume,
       source.volume AS trade_volume,
       bars.trades AS bar_trades,
       source.trades AS source_trades,
       CASE WHEN bars.volume = source.volume AND bars.trades = source.trades THEN 0 ELSE 1 END AS failures
FROM bars CROSS JOIN source;

-- name: check_ohlcv_1m_minute_coverage
-- One bar for every minute that had a trade: none missing, none extra, none twice.
WITH trade_minutes AS (
  SELECT DISTINCT date_trunc('minute', trade_time) AS minute
  FROM market_data.trades_binance
  WHERE year = :year AND month = :month AND symbol = :symbol
), bar_minutes AS (
  SELECT bar_time AS minute, COUNT(*) AS bars
  FROM market_data.ohlcv_1m
  WHERE year = :year AND month = :month AND symbol = :symbol
  GROUP BY bar_time
)
SELECT COUNT(t.minute) AS trading_minutes,
       COUNT(b.minute) AS bar_minutes,
       COUNT(*) FILTER (WHERE b.minute IS NULL) AS missing_bars,
       COUNT(*) FILTER (WHERE t.minute IS NULL) AS extra_bars,
       COUNT(*) FILTER (WHERE b.bars > 1) AS duplicated_bars,
       COUNT(*) FILTER (WHERE b.minute IS NULL OR t.minute IS NULL OR b.bars > 1) AS failures
FROM trade_minutes t
FULL OUTER JOIN bar_minutes b ON t.minute = b.minute;

-- name: check_daily_trade_stats_totals_reconcile
-- The daily rows add up to the partition's trades: trades, volume, buy + sell volume, one row per trading day.
WITH stats AS (
  SELECT COUNT(*) AS days,
         COALESCE(SUM(trades), 0) AS trades,
         COALESCE(SUM(volume), 0) AS volume,
         COALESCE(SUM(buy_volume + sell_volume), 0) AS split_volume
  FROM market_data.daily_trade_stats
  WHERE year = :year AND month = :month AND symbol = :symbol
), source AS (
  SELECT COUNT(DISTINCT day) AS days, COUNT(*) AS trades, COALESCE(SUM(quantity), 0) AS volume
  FROM market_data.trades_binance
  WHERE year = :year AND month = :month AND symbol = :symbol
)
SELECT stats.days AS stat_days,
       source.days AS trading_days,
       stats.trades AS stat_trades,
       source.trades AS source_trades,
       stats.volume AS stat_volume,
       source.volume AS source_volume,
       CASE WHEN stats.days = source.days AND stats.trades = source.trades AND stats.volume = source.volume
                 AND stats.split_volume = source.volume THEN 0 ELSE 1 END AS failures
FROM stats CROSS JOIN source;
