"""Partition keys: everything is validated before it reaches a path, URL, key or SQL (case 25)."""
import datetime as dt
import re

import pytest
from hypothesis import given, settings, strategies as st

from market_etl.core.keys import (
    InvalidPartitionKey, TradePartition, Zone, lake_key, new_run_id, parse_symbols, validate_month, validate_symbol,
)

HOSTILE = ["BTCUSDT' OR '1'='1", "../etc", "btcusdt", "BTC/USDT", "", "B", "A" * 21, "BTC USDT", "BTCUSDT\n",
           "BTCUSDT;DROP", "ÄBC"]


@pytest.mark.parametrize("symbol", HOSTILE)
def test_hostile_symbols_are_rejected(symbol):
    with pytest.raises(InvalidPartitionKey):
        validate_symbol(symbol)
    with pytest.raises(InvalidPartitionKey):
        TradePartition(symbol, "2025-07")


@pytest.mark.parametrize("month", ["2025-13", "2025-00", "2025-7", "25-07", "2016-12", "2999-01",
                                   "2025-07-01", "../2025-07", "2025-07' --"])
def test_bad_months_are_rejected(month):
    with pytest.raises(InvalidPartitionKey):
        validate_month(month)


def test_current_month_is_the_last_valid_one():
    assert validate_month("2026-11", today=dt.date(2026, 11, 28)) == "2026-11"
    with pytest.raises(InvalidPartitionKey):
        validate_month("2026-12", today=dt.date(2026, 11, 28))


def test_dagster_key_round_trip_and_rejection():
    p = TradePartition.from_dagster_key("2025-07-01|BTCUSDT")
    assert (p.symbol, p.month, p.dagster_key()) == ("BTCUSDT", "2025-07", "2025-07-01|BTCUSDT")
    for bad in ["BTCUSDT|2025-07-01", "2025-07-15|BTCUSDT", "2025-07-01|../x", "2025-07-01"]:
        with pytest.raises(InvalidPartitionKey):
            TradePartition.from_dagster_key(bad)


def test_lake_layout():
    p = TradePartition("BTCUSDT", "2025-07")
    assert lake_key(Zone.RAW, p) == "raw/binance/spot/trades/symbol=BTCUSDT/month=2025-07/BTCUSDT-trades-2025-07.zip"
    assert lake_key(Zone.RAW_UNZIPPED, p).endswith("symbol=BTCUSDT/month=2025-07/BTCUSDT-trades-2025-07.csv")
    assert lake_key(Zone.PROCESSED, p, day=5) == "processed/trades/year=2025/month=7/day=5/symbol=BTCUSDT"
    assert lake_key(Zone.REJECTED, p) == "rejected/trades/symbol=BTCUSDT/month=2025-07"


def test_analytics_run_prefixes_sort_by_start_and_are_validated():
    p = TradePartition("BTCUSDT", "2025-07")
    earlier = new_run_id(dt.datetime(2025, 8, 1, 12, 0, 0, 5, tzinfo=dt.timezone.utc))
    later = new_run_id(dt.datetime(2025, 8, 1, 12, 0, 0, 6, tzinfo=dt.timezone.utc))
    assert re.fullmatch(r"20250801T120000000005Z-[0-9a-f]{8}", earlier) and earlier < later
    assert lake_key(Zone.ANALYTICS, p, dataset="ohlcv_1m", run=earlier) == (
        f"analytics/ohlcv_1m/year=2025/month=7/symbol=BTCUSDT/run-{earlier}")
    for bad in ["../x", "20250801T120000000005Z", "20250801T120000000005Z-ABCDEF12", f"{earlier}/.."]:
        with pytest.raises(InvalidPartitionKey):
            lake_key(Zone.ANALYTICS, p, dataset="ohlcv_1m", run=bad)
    for zone, partition in [(Zone.PROCESSED, p), (Zone.ANALYTICS, None)]:
        with pytest.raises(ValueError, match="run prefix"):
            lake_key(zone, partition, dataset="ohlcv_1m", run=earlier)


def test_symbol_list_parsing():
    assert parse_symbols(" BTCUSDT, ETHUSDT ,") == ("BTCUSDT", "ETHUSDT")
    for bad in ["", "BTCUSDT,btcusdt", "BTCUSDT,BTCUSDT"]:
        with pytest.raises(InvalidPartitionKey):
            parse_symbols(bad)


SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_=.\-]+$")


@settings(deadline=None)  # microseconds an example; a loaded machine's pauses are not a failure
@given(symbol=st.text(max_size=24), year=st.integers(2000, 2100), month=st.integers(-1, 14),
       day=st.one_of(st.none(), st.integers(-1, 33)), zone=st.sampled_from(list(Zone)))
def test_key_builder_only_emits_safe_keys(symbol, year, month, day, zone):
    """Whatever comes in, a key either is refused or consists of safe, non-traversing segments."""
    try:
        partition = TradePartition(symbol, f"{year:04d}-{month:02d}")
        key = lake_key(zone, partition, day=day)
    except InvalidPartitionKey:
        return
    assert SYMBOL_OK.fullmatch(partition.symbol)
    segments = key.split("/")
    assert all(SAFE_SEGMENT.match(s) and s not in ("", ".", "..") for s in segments)
    assert f"symbol={symbol}" in key or zone is Zone.CATALOG or (zone in (Zone.PROCESSED,) and day is None)


SYMBOL_OK = re.compile(r"[A-Z0-9]{2,20}")
