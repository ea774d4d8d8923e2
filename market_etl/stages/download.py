"""Stage: download one monthly trades archive into the raw zone (local subprocess or Glue job)."""
from __future__ import annotations

from market_etl.core import defaults
from market_etl.core.download import RetryPolicy, download_archive
from market_etl.stages._stage import flag_argument, open_stage_pipes, parse_stage_args, stage_parser
from market_etl.lake import open_lake


def main(argv=None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--base-url", required=True)
    flag_argument(parser, "--allow-missing-checksum",
                  help="accept an archive whose .CHECKSUM is missing upstream (reported as a WARN check)")
    parser.add_argument("--timeout", type=float, default=defaults.HTTP_TIMEOUT_SECONDS, help="read timeout, seconds")
    parser.add_argument("--attempts", type=int, default=defaults.HTTP_ATTEMPTS)
    parser.add_argument("--backoff", type=float, default=defaults.RETRY_BACKOFF_SECONDS,
                        help="first retry delay, seconds")
    args = parse_stage_args(parser, argv)
    with open_stage_pipes(argv) as pipes:
        lake = open_lake(args.lake, s3_endpoint_url=args.s3_endpoint_url, region=args.aws_region)
        pipes.log.info(f"downloading {args.partition} from {args.base_url}")
        result = download_archive(
            args.partition, args.base_url, lake,
            allow_missing_checksum=args.allow_missing_checksum,
            timeout=(defaults.HTTP_CONNECT_TIMEOUT_SECONDS, args.timeout),
            policy=RetryPolicy(attempts=args.attempts, backoff_seconds=args.backoff),
        )
        if result.status == "up_to_date":
            pipes.log.info(f"{args.partition}: up to date (sha256 {result.sha256}); nothing downloaded")
        else:
            pipes.log.info(f"{args.partition}: {result.status} {result.bytes} bytes in "
                           f"{result.seconds:.2f}s ({result.mb_per_s:.1f} MB/s)")
        metadata = result.as_metadata()
        metadata["lake_uri"] = lake.uri(result.key)
        if not result.checksum_verified:
            pipes.log.warning(f"{args.partition}: no CHECKSUM published; accepted unverified (opt-in)")
        pipes.report_asset_materialization(metadata=metadata, data_version=result.sha256)
        pipes.report_asset_check(
            "checksum_verified", passed=result.checksum_verified, severity="WARN",
            metadata={"sha256": result.sha256},
        )


if __name__ == "__main__":
    main()
