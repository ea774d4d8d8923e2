"""Resources for each runtime: the same keys, swappable implementations, chosen in one place."""

from market_etl.resources.alerts import Alerter, LogAlerter, SnsAlerter
from market_etl.resources.catalog import IcebergCatalogResource
from market_etl.resources.lake import BinanceSource, LakeResource
from market_etl.resources.sql import build_sql_engine
from market_etl.resources.stages import GlueStageLauncher, LocalStageLauncher, glue_job_names
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
        attempt_deadline_seconds=settings.http_attempt_deadline_seconds,
    )
    stages = LocalStageLauncher() if settings.runtime == "local" else glue_stage_launcher(settings)
    catalog = IcebergCatalogResource(lake_url=settings.lake, glue=settings.runtime == "aws",
                                     region=settings.aws_region, glue_endpoint_url=settings.glue_endpoint_url,
                                     s3_endpoint_url=settings.s3_endpoint_url)
    return {"lake": lake, "binance": binance, "stages": stages, "sql": build_sql_engine(settings),
            "catalog": catalog, "alerts": build_alerter(settings)}


def build_alerter(settings: Settings) -> Alerter:
    """aws with a topic: SNS (the topic Terraform creates for Glue's failures too); otherwise the log."""
    if settings.runtime == "aws" and settings.alerts_topic_arn:
        return SnsAlerter(topic_arn=settings.alerts_topic_arn, region=settings.aws_region)
    return LogAlerter()


def glue_stage_launcher(settings: Settings) -> GlueStageLauncher:
    """The aws runtime's stages: the Glue jobs `<MARKET_ETL_GLUE_JOB_PREFIX><stage>`, Pipes through S3."""
    return GlueStageLauncher(
        job_names=glue_job_names(settings.glue_job_prefix),
        pipes_bucket=settings.pipes_bucket,
        region=settings.aws_region,
        s3_endpoint_url=settings.s3_endpoint_url,
    )
