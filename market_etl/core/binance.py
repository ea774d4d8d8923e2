"""Binance public-archive names, URLs and CHECKSUM files (see docs/binance-files.md)."""
from __future__ import annotations

import re

from market_etl.core.keys import TradePartition, archive_stem

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ChecksumFormatError(ValueError):
    pass


def archive_name(partition: TradePartition) -> str:
    return f"{archive_stem(partition)}.zip"


def csv_member_name(partition: TradePartition) -> str:
    """The single member Binance puts in a monthly trades archive."""
    return f"{archive_stem(partition)}.csv"


def archive_url(base_url: str, partition: TradePartition) -> str:
    base = base_url.rstrip("/")
    return f"{base}/data/spot/monthly/trades/{partition.symbol}/{archive_name(partition)}"


def checksum_url(base_url: str, partition: TradePartition) -> str:
    return archive_url(base_url, partition) + ".CHECKSUM"


def listing_prefix(symbol: str) -> str:
    """The key prefix of a symbol's monthly trades in the archive's bucket listing."""
    return f"data/spot/monthly/trades/{symbol}/"


def parse_checksum(text: str, expected_file: str) -> str:
    """Parse a sha256sum line (`<hex>  <name>`, usually without a trailing newline)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    parts = line.split()
    if len(parts) != 2 or not SHA256_HEX.fullmatch(parts[0].lower()):
        raise ChecksumFormatError(f"unexpected CHECKSUM content for {expected_file}: {text[:120]!r}")
    digest, name = parts[0].lower(), parts[1].lstrip("*")
    if name != expected_file:
        raise ChecksumFormatError(f"CHECKSUM names {name!r}, expected {expected_file!r}")
    return digest
