"""Resources for each runtime: the same keys, swappable implementations, chosen in one place."""

from market_etl.resources.lake import BinanceSource, LakeResource
from market_etl.resources.stages import LocalStageLauncher
from market_etl.settings import Settings


def build_resources(settings: Settings) -> dict:
    lake = LakeResource(url=settings.lake, s3_endpoint_url=settings.s3_endpoint_url,
                        aws_region=settings.aws_region)
    binance = BinanceSource(
        base_url=settings.base_url,
        allow_missing_checksum=settings.allow_missing_checksum,
        timeout_seconds=settings.http_timeout_seconds,
        attempts=settings.http_attempts,
        backoff_seconds=settings.retry_backoff_seconds,
    )
    if settings.runtime == "local":
        return {"lake": lake, "binance": binance, "stages": LocalStageLauncher()}
    raise NotImplementedError(
        "MARKET_ETL_RUNTIME=aws: the Glue stage launcher is not wired yet; use the local runtime"
    )
