
import dagster as dg

from market_etl.core import defaults
from market_etl.core.download import DownloadResult
from market_etl.core.keys import TradePartition
from market_etl.lake import Lake, open_lake


class LakeResource(dg.ConfigurableResource):
    """Where the lake lives: a local directory or s3://bucket/prefix."""

    url: str
    s3_endpoint_url: str | None = None
    aws_region: str | None = None

    def open(self) -> Lake:
        return open_lake(self.url, s3_endpoint_url=self.s3_endpoint_url, region=self.aws_region)

    def stage_args(self) -> list[str]:
        args = ["--lake", self.url]
        if self.s3_endpoint_url:
            args += ["--s3-endpoint-url", self.s3_endpoint_url]
        if self.aws_region:
            args += ["--aws-region", self.aws_region]
        return args


class BinanceSource(dg.ConfigurableResource):
    """The Binance public archive (or a mirror of it) and how patiently to download from it."""

    base_url: str = defaults.BINANCE_BASE_URL
    allow_missing_checksum: bool = defaults.ALLOW_MISSING_CHECKSUM
    timeout_seconds: float = defaults.HTTP_TIMEOUT_SECONDS
    attempts: int = defaults.HTTP_ATTEMPTS
    backoff_seconds: float = defaults.RETRY_BACKOFF_SECONDS
    attempt_deadline_seconds: float = defaults.HTTP_ATTEMPT_DEADLINE_SECONDS

    def archive_in_lake(self, partition: TradePartition, lake: Lake) -> DownloadResult | None:
        """The partition's raw archive when the lake holds the one the source publishes now (one CHECKSUM
        request); None on any doubt (no checksum, an error, another archive): then the download stage decides."""
        import requests

        from market_etl.core.download import RetryPolicy, already_downloaded, check_base_url, fetch_expected_sha256

        try:
            check_base_url(self.base_url)
            with requests.Session() as session:
                expected = fetch_expected_sha256(
                    session, self.base_url, partition, (defaults.HTTP_CONNECT_TIMEOUT_SECONDS, self.timeout_seconds),
                    RetryPolicy(attempts=1, backoff_seconds=0), allow_missing=False)
        except Exception:  # noqa: BLE001 - whatever it is, the stage meets it again and reports it properly
            return None
        return already_downloaded(partition, self.base_url, lake, expected)

    def stage_args(self) -> list[str]:
        args = ["--base-url", self.base_url, "--timeout", str(self.timeout_seconds),
                "--attempts", str(self.attempts), "--backoff", str(self.backoff_seconds),
                "--attempt-deadline", str(self.attempt_deadline_seconds)]
        if self.allow_missing_checksum:
            args.append("--allow-missing-checksum")
        return args
