-- Sample queries over market_data.trades_binance, in Athena's dialect (Trino SQL).
-- Run one by name:  market-etl query NAME [--symbol BTCUSDT] [--date 2025-07-15 | --month 2025-07]
-- Locally the same text runs on DuckDB (translated with sqlglot); on the aws runtime on Athena.
--
-- Format: a block starts with `-- name: <name>`; the comment lines right after it describe the query.
-- Parameters are written :symbol, :year, :month, :day. They are validated, then bound (never pasted
-- into the text): DuckDB named parameters locally, Athena execution parameters on AWS.
-- Buy/sell: is_buyer_maker = true means the buyer was the resting order, so the taker SOLD.
-- Notional (quote_qty) is in the quote asset (USDT for *USDT symbols). Times are UTC.

-- name: trades_by_symbol
-- Original design query 1: trades, volume and VWAP per symbol over the whole table.
SELECT symbol,
       COUNT(*) AS trades,
       SUM(quantity) AS volume,
       SUM(quote_qty) AS quote_volume,
       CAST(SUM(price * quantity) AS DOUBLE) / CAST(SUM(quantity) AS DOUBLE) AS vwap,
       MIN(trade_time) AS first_trade_time,
       MAX(trade_time) AS last_trade_time
FROM market_data.trades_binance
GROUP BY symbol
ORDER BY symbol;

-- name: vwap_1m
-- Original design query 2: minute-by-minute VWAP for one symbol-day. The filters on the partition
-- keys (year, month, day, symbol) make the engine read that day's files only.
SELECT date_trunc('minute', trade_time) AS minute,
       CAST(SUM(price * quantity) AS DOUBLE) / CAST(SUM(quantity) AS DOUBLE) AS vwap,
       SUM(quantity) AS volume,
       COUNT(*) AS trades
FROM market_data.trades_binance
WHERE year = :year AND month = :month AND day = :day AND symbol = :symbol
GROUP BY date_trunc('minute', trade_time)
ORDER BY minute;

-- name: original_order_flow
-- Original design query 3 as designed: taker buy / taker sell notional in USD (quote_qty) per symbol for one month.
SELECT symbol,
       CASE WHEN is_buyer_maker THEN 'taker_sell' ELSE 'taker_buy' END AS taker_side,
       COUNT(*) AS trades,
       SUM(quote_qty) AS total_volume_usd
FROM market_data.trades_binance
WHERE year = :year AND month = :month
GROUP BY symbol, CASE WHEN is_buyer_maker THEN 'taker_sell' ELSE 'taker_buy' END
ORDER BY symbol, taker_side;

-- name: order_flow_by_symbol
-- Richer variant of original design query 3 (not the original: no month filter, base-asset quantity):
-- buy/sell order flow by symbol over the whole table (taker side). imbalance = (buy - sell) / total volume.
SELECT symbol,
       SUM(CASE WHEN is_buyer_maker THEN 0 ELSE quantity END) AS buy_volume,
       SUM(CASE WHEN is_buyer_maker THEN quantity ELSE 0 END) AS sell_volume,
       COUNT(*) FILTER (WHERE NOT is_buyer_maker) AS buy_trades,
       COUNT(*) FILTER (WHERE is_buyer_maker) AS sell_trades,
       CAST(SUM(CASE WHEN is_buyer_maker THEN -quantity ELSE quantity END) AS DOUBLE)
         / CAST(SUM(quantity) AS DOUBLE) AS imbalance
FROM market_data.trades_binance
GROUP BY symbol
ORDER BY symbol;

-- name: daily_ohlcv
-- Daily open/high/low/close and volume for one symbol-month. Open and close are the prices of the
-- day's first and last trade by trade id (ids are Binance's execution order; times can tie).
SELECT CAST(trade_time AS DATE) AS trade_date,
       min_by(price, trade_id) AS open,
       MAX(price) AS high,
       MIN(price) AS low,
       max_by(price, trade_id) AS close,
       SUM(quantity) AS volume,
       SUM(quote_qty) AS quote_volume,
       COUNT(*) AS trades
FROM market_data.trades_binance
WHERE year = :year AND month = :month AND symbol = :symbol
GROUP BY CAST(trade_time AS DATE)
ORDER BY trade_date;

-- name: largest_trades
-- The 20 largest trades by notional in one symbol-month, with the taker's side.
SELECT trade_id,
       trade_time,
       price,
       quantity,
       quote_qty,
       CASE WHEN is_buyer_maker THEN 'sell' ELSE 'buy' END AS taker_side
FROM market_data.trades_binance
WHERE year = :year AND month = :month AND symbol = :symbol
ORDER BY quote_qty DESC, trade_id
LIMIT 20;

-- name: trade_size_distribution
-- How trades and notional split across notional-size buckets (powers of ten) in one symbol-month.
WITH sized AS (
  SELECT quantity,
         quote_qty,
         CASE WHEN quote_qty < 100 THEN 0
              WHEN quote_qty < 1000 THEN 1
              WHEN quote_qty < 10000 THEN 2
              WHEN quote_qty < 100000 THEN 3
              ELSE 4 END AS bucket
  FROM market_data.trades_binance
  WHERE year = :year AND month = :month AND symbol = :symbol
)
SELECT bucket,
       CASE bucket WHEN 0 THEN '< 100'
                   WHEN 1 THEN '100 - 1k'
                   WHEN 2 THEN '1k - 10k'
                   WHEN 3 THEN '10k - 100k'
                   ELSE '>= 100k' END AS notional_range,
       COUNT(*) AS trades,
       SUM(quantity) AS volume,
       SUM(quote_qty) AS quote_volume,
       CAST(COUNT(*) AS DOUBLE) / SUM(COUNT(*)) OVER () AS trade_share,
       CAST(SUM(quote_qty) AS DOUBLE) / SUM(CAST(SUM(quote_qty) AS DOUBLE)) OVER () AS notional_share
FROM sized
GROUP BY bucket
ORDER BY bucket;

-- name: hourly_volume_profile
-- Volume by hour of day (UTC) over one symbol-month: when the symbol trades. Hours without trades are absent.
SELECT hour(trade_time) AS hour_utc,
       COUNT(*) AS trades,
       SUM(quantity) AS volume,
       CAST(SUM(quantity) AS DOUBLE) / SUM(CAST(SUM(quantity) AS DOUBLE)) OVER () AS volume_share,
       CAST(SUM(price * quantity) AS DOUBLE) / CAST(SUM(quantity) AS DOUBLE) AS vwap
FROM market_data.trades_binance
WHERE year = :year AND month = :month AND symbol = :symbol
GROUP BY hour(trade_time)
ORDER BY hour_utc;
