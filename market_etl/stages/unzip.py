"""Stage: stream the CSV member of one raw archive into the raw_unzipped zone (local subprocess or Glue job)."""
from __future__ import annotations

from market_etl.core.memory import peak_rss_bytes, reuse_freed_buffers
from market_etl.core.unzip import DEFAULT_MAX_BYTES, DEFAULT_MAX_RATIO, UnzipLimits, unzip_partition
from market_etl.stages._progress import ReportingLake, progress_seconds
from market_etl.stages._stage import abort_writes_on_sigterm, open_stage_pipes, parse_stage_args, stage_parser
from market_etl.lake import open_lake


def main(argv=None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help="refuse a member that declares or inflates to more bytes (zip bomb cap)")
    parser.add_argument("--max-ratio", type=float, default=DEFAULT_MAX_RATIO,
                        help="refuse a member whose uncompressed:compressed ratio is higher (zip bomb cap)")
    args = parse_stage_args(parser, argv)
    reuse_freed_buffers()
    abort_writes_on_sigterm()
    with open_stage_pipes(argv) as pipes:
        lake = open_lake(args.lake, s3_endpoint_url=args.s3_endpoint_url, region=args.aws_region)
        reporting = ReportingLake(lake, f"inflating {args.partition}", pipes.log.info, progress_seconds())
        result = unzip_partition(args.partition, reporting, UnzipLimits(args.max_bytes, args.max_ratio))
        if result.status == "up_to_date":
            pipes.log.info(f"{args.partition}: up to date (built from sha256 {result.source_sha256}); skipped")
        else:
            pipes.log.info(f"{args.partition}: {result.status} {result.uncompressed_bytes} bytes, "
                           f"{result.lines} lines in {result.seconds:.2f}s ({result.mb_per_s:.0f} MB/s, "
                           f"{result.inflate})")
        metadata = result.as_metadata(lake.uri(result.key))
        metadata["peak_rss_mb"] = round(peak_rss_bytes() / 1e6, 1)  # the whole stage process, interpreter included
        pipes.report_asset_materialization(metadata=metadata, data_version=result.source_sha256)


if __name__ == "__main__":
    main()
