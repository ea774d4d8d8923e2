
import dagster as dg

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

    base_url: str = "https://data.binance.vision"
    allow_missing_checksum: bool = False
    timeout_seconds: float = 30.0
    attempts: int = 5
    backoff_seconds: float = 1.0
    attempt_deadline_seconds: float = 1800.0

    def stage_args(self) -> list[str]:
        args = ["--base-url", self.base_url, "--timeout", str(self.timeout_seconds),
                "--attempts", str(self.attempts), "--backoff", str(self.backoff_seconds),
                "--attempt-deadline", str(self.attempt_deadline_seconds)]
        if self.allow_missing_checksum:
            args.append("--allow-missing-checksum")
        return args
