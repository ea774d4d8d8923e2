"""All configuration, from environment variables with defaults.

Read when resources and definitions are built (never at import), so tests and
tools can set the environment first. These names are the public interface
documented in the README.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from market_etl.core.keys import parse_symbols, validate_month
from market_etl.core.listing import DEFAULT_LISTING_URL

RUNTIMES = ("local", "aws")


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _bucket_of(lake: str) -> str | None:
    """The bucket of an s3:// lake URL; None for a local lake."""
    if not lake.startswith("s3://"):
        return None
    return lake[len("s3://"):].split("/", 1)[0]


@dataclass(frozen=True)
class Settings:
    runtime: str = "local"
    lake: str = "./data/lake"
    base_url: str = "https://data.binance.vision"
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
    first_month: str = "2025-07"
    download_concurrency: int = 2
    allow_missing_checksum: bool = False
    http_timeout_seconds: float = 30.0
    http_attempts: int = 5
    retry_backoff_seconds: float = 1.0
    s3_endpoint_url: str | None = None
    glue_endpoint_url: str | None = None
    aws_region: str | None = None
    listing_url: str = DEFAULT_LISTING_URL
    sensor_interval_seconds: int = 6 * 3600
    auto_ingest: bool = False
    pipes_bucket: str | None = None
    glue_job_prefix: str = "market-etl-"
    reject_tolerance: float = 0.0
    snapshot_retention_days: float = 7.0
    orphan_grace_days: float = 3.0
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        runtime = env.get("MARKET_ETL_RUNTIME", "local").strip().lower()
        if runtime not in RUNTIMES:
            raise ValueError(f"MARKET_ETL_RUNTIME={runtime!r}: expected one of {', '.join(RUNTIMES)}")
        lake = env.get("MARKET_ETL_LAKE", "./data/lake").strip()
        if runtime == "aws" and not lake.startswith("s3://"):
            raise ValueError("MARKET_ETL_RUNTIME=aws needs MARKET_ETL_LAKE=s3://bucket/prefix")
        if not lake.startswith("s3://"):
            lake = str(Path(lake).expanduser().resolve())
        return cls(
            runtime=runtime,
            lake=lake,
            base_url=env.get("BINANCE_BASE_URL", "https://data.binance.vision").rstrip("/"),
            symbols=parse_symbols(env.get("MARKET_ETL_SYMBOLS", "BTCUSDT,ETHUSDT,BNBUSDT")),
            first_month=validate_month(env.get("MARKET_ETL_FIRST_MONTH", "2025-07").strip()),
            download_concurrency=int(env.get("MARKET_ETL_DOWNLOAD_CONCURRENCY", "2")),
            allow_missing_checksum=_flag(env.get("MARKET_ETL_ALLOW_MISSING_CHECKSUM", "0")),
            http_timeout_seconds=float(env.get("MARKET_ETL_HTTP_TIMEOUT", "30")),
            http_attempts=int(env.get("MARKET_ETL_HTTP_ATTEMPTS", "5")),
            retry_backoff_seconds=float(env.get("MARKET_ETL_RETRY_BACKOFF", "1.0")),
            s3_endpoint_url=env.get("MARKET_ETL_S3_ENDPOINT_URL") or None,
            # The Glue Data Catalog API (the Iceberg catalog on aws); unset: AWS's own endpoint.
            glue_endpoint_url=env.get("MARKET_ETL_GLUE_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            listing_url=env.get("BINANCE_LISTING_URL", DEFAULT_LISTING_URL).rstrip("/"),
            sensor_interval_seconds=int(env.get("MARKET_ETL_SENSOR_INTERVAL", str(6 * 3600))),
            auto_ingest=_flag(env.get("MARKET_ETL_AUTO_INGEST", "0")),
            # aws runtime: Pipes context/messages go to s3://<pipes bucket>/pipes/ (default: the lake's bucket).
            pipes_bucket=env.get("MARKET_ETL_PIPES_BUCKET") or _bucket_of(lake),
            glue_job_prefix=env.get("MARKET_ETL_GLUE_JOB_PREFIX", "market-etl-").strip(),
            # Fraction of a partition's rows a validation rule may quarantine before its check fails.
            reject_tolerance=float(env.get("MARKET_ETL_REJECT_TOLERANCE", "0")),
            # Table maintenance: snapshots older than this are expired (time travel reaches back this far) ...
            snapshot_retention_days=float(env.get("MARKET_ETL_SNAPSHOT_RETENTION_DAYS", "7")),
            # ... and files no snapshot references are deleted once older than this.
            orphan_grace_days=float(env.get("MARKET_ETL_ORPHAN_GRACE_DAYS", "3")),
        )
