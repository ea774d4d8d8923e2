"""The lake's assets. Bodies stay thin: resolve the partition, run a stage, return its result."""

import dagster as dg

from market_etl.core.unzip import already_unzipped
from market_etl.defs.automation import DOWNSTREAM_AUTOMATION
from market_etl.defs.keys import DOWNLOAD_POOL, RAW_TRADES_ZIP, RAW_UNZIPPED_TRADES_CSV, UNZIP_POOL
from market_etl.defs.partitions import partition_of
from market_etl.resources import BinanceSource, LakeResource
from market_etl.resources.stages import StageLauncher, partition_args


def build_lake_assets(partitions_def: dg.PartitionsDefinition,
                      retry_policy: dg.RetryPolicy | None = None) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=RAW_TRADES_ZIP,
        partitions_def=partitions_def,
        group_name="lake",
        kinds={"python", "s3"},
        pool=DOWNLOAD_POOL,
        retry_policy=retry_policy,
        check_specs=[dg.AssetCheckSpec(
            "checksum_verified", asset=RAW_TRADES_ZIP,
            description="The archive's SHA-256 matched Binance's .CHECKSUM file. WARN when the "
                        "checksum was missing upstream and the download was accepted by explicit opt-in.",
            partitions_def=partitions_def,
        )],
        description=(
            "Binance's monthly spot trades archive (`{SYMBOL}-trades-{YYYY-MM}.zip`) in the raw zone, "
            "streamed and SHA-256-verified against the published .CHECKSUM. The digest is the "
            "partition's data version: a republished archive is noticed and replaced."
        ),
    )
    def trades_zip(context: dg.AssetExecutionContext, lake: LakeResource, binance: BinanceSource,
                   stages: StageLauncher):
        partition = partition_of(context)
        if stages.checks_up_to_date_in_process:
            storage = lake.open()
            if (kept := binance.archive_in_lake(partition, storage)) is not None:
                # What the stage would report, without starting a process for it.
                context.log.info(f"{partition}: up to date (sha256 {kept.sha256}); nothing downloaded, "
                                 "no stage launched")
                return dg.MaterializeResult(
                    metadata={**kept.as_metadata(), "lake_uri": storage.uri(kept.key)},
                    data_version=dg.DataVersion(kept.sha256),
                    check_results=[dg.AssetCheckResult(check_name="checksum_verified", passed=True,
                                                       severity=dg.AssetCheckSeverity.WARN,
                                                       metadata={"sha256": kept.sha256})])
        args = partition_args(partition) + lake.stage_args() + binance.stage_args()
        return stages.run(context, "download", args).get_results()

    @dg.asset(
        key=RAW_UNZIPPED_TRADES_CSV,
        deps=[RAW_TRADES_ZIP],
        partitions_def=partitions_def,
        automation_condition=DOWNSTREAM_AUTOMATION,
        group_name="lake",
        kinds={"python", "s3", "csv"},
        pool=UNZIP_POOL,
        retry_policy=retry_policy,
        description=(
            "The archive's single CSV member (`{SYMBOL}-trades-{YYYY-MM}.csv`) in the raw_unzipped zone, "
            "streamed in bounded memory (ISA-L inflate; S3 multipart or temp file + rename, nothing partial "
            "ever visible). Rejects archives with extra members, unexpected names, path components, zip "
            "bombs (size and ratio caps on the streamed bytes), and CRC or size mismatches. Its data "
            "version is the raw archive's SHA-256: skipped while that is unchanged, rebuilt when it changes."
        ),
    )
    def trades_csv(context: dg.AssetExecutionContext, lake: LakeResource, stages: StageLauncher):
        partition = partition_of(context)
        if stages.checks_up_to_date_in_process:
            storage = lake.open()
            if (built := already_unzipped(partition, storage)) is not None:
                # What the stage would report, without starting a process for it.
                context.log.info(f"{partition}: up to date (built from sha256 {built.source_sha256}); "
                                 "no stage launched")
                return dg.MaterializeResult(metadata=built.as_metadata(storage.uri(built.key)),
                                            data_version=dg.DataVersion(built.source_sha256))
        args = partition_args(partition) + lake.stage_args()
        return stages.run(context, "unzip", args).get_results()

    return [trades_zip, trades_csv]
