"""A local stand-in for data.binance.vision: deterministic archives and a faulty server.

`generate` writes Binance-format monthly spot trade zips (+ CHECKSUMs) with
optional injected defects; `server.MirrorServer` serves them over loopback
HTTP with switchable faults; `cli.register` adds `market-etl mirror ...`.
"""

from market_etl_devtools.mirror.generate import (
    Defects,
    GeneratedFile,
    generate_mirror,
    generate_month,
    months_range,
    read_source_rows,
)
from market_etl_devtools.mirror.server import MirrorServer

__all__ = [
    "Defects",
    "GeneratedFile",
    "MirrorServer",
    "generate_mirror",
    "generate_month",
    "months_range",
    "read_source_rows",
]
