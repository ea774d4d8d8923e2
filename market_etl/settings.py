"""All configuration, from environment variables with defaults.

Read when resources and definitions are built (never at import), so tests and
tools can set the environment first. These names are the public interface
documented in the README.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from market_etl.core import defaults
from market_etl.core.keys import parse_symbols, validate_month

RUNTIMES = ("local", "aws")
T = TypeVar("T")


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _bucket_of(lake: str) -> str | None:
    """The bucket of an s3:// lake URL; None for a local lake."""
    if not lake.startswith("s3://"):
        return None
    return lake[len("s3://"):].split("/", 1)[0]


def _read(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T]) -> T:
    """`parse(env[name])` when the variable is set (an empty value is parsed too, and fails as it should), else `default`."""
    return parse(env[name]) if name in env else default


@dataclass(frozen=True)
class Settings:
    runtime: str = defaults.RUNTIME
    lake: str = defaults.LAKE
    base_url: str = defaults.BINANCE_BASE_URL
    symbols: tuple[str, ...] = defaults.SYMBOLS
    first_month: str = defaults.FIRST_MONTH
    download_concurrency: int = defaults.DOWNLOAD_CONCURRENCY
    allow_missing_checksum: bool = defaults.ALLOW_MISSING_CHECKSUM
    http_timeout_seconds: float = defaults.HTTP_TIMEOUT_SECONDS
    http_attempts: int = defaults.HTTP_ATTEMPTS
    retry_backoff_seconds: float = defaults.RETRY_BACKOFF_SECONDS
    http_attempt_deadline_seconds: float = defaults.HTTP_ATTEMPT_DEADLINE_SECONDS
    s3_endpoint_url: str | None = None
    glue_endpoint_url: str | None = None
    aws_region: str | None = None
    listing_url: str = defaults.BINANCE_LISTING_URL
    sensor_interval_seconds: int = defaults.SENSOR_INTERVAL_SECONDS
    auto_ingest: bool = defaults.AUTO_INGEST
    pipes_bucket: str | None = None
    glue_job_prefix: str = defaults.GLUE_JOB_PREFIX
    reject_tolerance: float = defaults.REJECT_TOLERANCE
    glue_max_concurrent_runs: int = defaults.GLUE_MAX_CONCURRENT_RUNS
    unzip_concurrency: int = defaults.UNZIP_CONCURRENCY
    alerts_topic_arn: str | None = None
    athena_workgroup: str = defaults.ATHENA_WORKGROUP
    stage_retries: int = defaults.STAGE_RETRIES
    stage_retry_delay_seconds: float = defaults.STAGE_RETRY_DELAY_SECONDS
    snapshot_retention_days: float = defaults.SNAPSHOT_RETENTION_DAYS
    orphan_grace_days: float = defaults.ORPHAN_GRACE_DAYS
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        runtime = _read(env, "MARKET_ETL_RUNTIME", defaults.RUNTIME, str).strip().lower()
        if runtime not in RUNTIMES:
            raise ValueError(f"MARKET_ETL_RUNTIME={runtime!r}: expected one of {', '.join(RUNTIMES)}")
        lake = _read(env, "MARKET_ETL_LAKE", defaults.LAKE, str).strip()
        if runtime == "aws" and not lake.startswith("s3://"):
            raise ValueError("MARKET_ETL_RUNTIME=aws needs MARKET_ETL_LAKE=s3://<bucket>/")
        if runtime == "aws" and lake[len("s3://"):].split("/", 1)[1:] not in ([], [""]):
            # terraform/ grants each Glue role its zones at the bucket root (raw/, processed/, ...): under a
            # prefix every job would be denied halfway through a run. Refused here, before anything starts.
            raise ValueError(
                f"MARKET_ETL_LAKE={lake}: on the aws runtime the lake is a whole bucket, s3://<bucket>/ (the "
                f"Terraform stack's IAM grants the zones at the bucket root; `terraform output dagster_environment` "
                f"prints the value to use). A lake under a prefix works on the local runtime only.")
        if not lake.startswith("s3://"):
            lake = str(Path(lake).expanduser().resolve())
        return cls(
            runtime=runtime,
            lake=lake,
            base_url=_read(env, "BINANCE_BASE_URL", defaults.BINANCE_BASE_URL, str).rstrip("/"),
            symbols=_read(env, "MARKET_ETL_SYMBOLS", defaults.SYMBOLS, parse_symbols),
            first_month=validate_month(_read(env, "MARKET_ETL_FIRST_MONTH", defaults.FIRST_MONTH, str).strip()),
            download_concurrency=_read(env, "MARKET_ETL_DOWNLOAD_CONCURRENCY", defaults.DOWNLOAD_CONCURRENCY, int),
            allow_missing_checksum=_read(env, "MARKET_ETL_ALLOW_MISSING_CHECKSUM", defaults.ALLOW_MISSING_CHECKSUM,
                                         _flag),
            http_timeout_seconds=_read(env, "MARKET_ETL_HTTP_TIMEOUT", defaults.HTTP_TIMEOUT_SECONDS, float),
            http_attempts=_read(env, "MARKET_ETL_HTTP_ATTEMPTS", defaults.HTTP_ATTEMPTS, int),
            retry_backoff_seconds=_read(env, "MARKET_ETL_RETRY_BACKOFF", defaults.RETRY_BACKOFF_SECONDS, float),
            http_attempt_deadline_seconds=_read(env, "MARKET_ETL_HTTP_ATTEMPT_DEADLINE",
                                                defaults.HTTP_ATTEMPT_DEADLINE_SECONDS, float),
            s3_endpoint_url=env.get("MARKET_ETL_S3_ENDPOINT_URL") or None,
            # The Glue Data Catalog API (the Iceberg catalog on aws); unset: AWS's own endpoint.
            glue_endpoint_url=env.get("MARKET_ETL_GLUE_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            listing_url=_read(env, "BINANCE_LISTING_URL", defaults.BINANCE_LISTING_URL, str).rstrip("/"),
            sensor_interval_seconds=_read(env, "MARKET_ETL_SENSOR_INTERVAL", defaults.SENSOR_INTERVAL_SECONDS, int),
            auto_ingest=_read(env, "MARKET_ETL_AUTO_INGEST", defaults.AUTO_INGEST, _flag),
            # aws runtime: Pipes context/messages go to s3://<pipes bucket>/pipes/ (default: the lake's bucket).
            pipes_bucket=env.get("MARKET_ETL_PIPES_BUCKET") or _bucket_of(lake),
            glue_job_prefix=_read(env, "MARKET_ETL_GLUE_JOB_PREFIX", defaults.GLUE_JOB_PREFIX, str).strip(),
            reject_tolerance=_read(env, "MARKET_ETL_REJECT_TOLERANCE", defaults.REJECT_TOLERANCE, float),
            # aws: each Glue job's max_concurrent_runs (terraform var glue_max_concurrent_runs): the pools' limit there.
            glue_max_concurrent_runs=_read(env, "MARKET_ETL_GLUE_MAX_CONCURRENT_RUNS", defaults.GLUE_MAX_CONCURRENT_RUNS,
                                           int),
            # local: unzip steps at once (each one inflates on one core and holds a bounded buffer).
            unzip_concurrency=_read(env, "MARKET_ETL_UNZIP_CONCURRENCY", defaults.UNZIP_CONCURRENCY, int),
            # aws: failed runs are published to this SNS topic (terraform output alerts_topic_arn); else logged.
            alerts_topic_arn=env.get("MARKET_ETL_ALERTS_TOPIC_ARN") or None,
            # aws: the Athena workgroup queries run in (terraform/athena.tf: named after project_name).
            athena_workgroup=_read(env, "MARKET_ETL_ATHENA_WORKGROUP", defaults.ATHENA_WORKGROUP, str).strip(),
            # Step retries of the stage assets (exponential backoff from this delay, with jitter).
            stage_retries=_read(env, "MARKET_ETL_STAGE_RETRIES", defaults.STAGE_RETRIES, int),
            stage_retry_delay_seconds=_read(env, "MARKET_ETL_STAGE_RETRY_DELAY", defaults.STAGE_RETRY_DELAY_SECONDS,
                                            float),
            snapshot_retention_days=_read(env, "MARKET_ETL_SNAPSHOT_RETENTION_DAYS", defaults.SNAPSHOT_RETENTION_DAYS,
                                          float),
            orphan_grace_days=_read(env, "MARKET_ETL_ORPHAN_GRACE_DAYS", defaults.ORPHAN_GRACE_DAYS, float),
        )
