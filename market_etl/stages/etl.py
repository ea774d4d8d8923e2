"""Stage: one symbol-month of trades CSV -> a staged version of market_data.trades_binance (write + audit).

The same file runs as a local subprocess (Spark local[*], through Dagster Pipes) and as a Glue 5 Spark
job; it imports dagster_pipes, never dagster, and takes everything as arguments. The transforms are in
`market_etl.core.trades` (imported by the Spark path only: the DuckDB engine runs without pyspark);
this module reads, calls them, writes and reports:

1. The first line: header or not, seven columns or a SchemaDrift naming the column (before Spark starts).
2. One pass over the CSV: split, parse, apply the rules, count (observed during the write), and write
   the valid rows, sorted by trade time within each day, into the run's scratch prefix (temp zone).
3. Only when rows were rejected: a second pass writes them, with reason, original line, symbol, month
   and run, to the scratch prefix.
4. Verify the ids from the Parquet just written (runs of consecutive ids: no shuffle). Only when an id
   appears twice: deduplicate (exact copies) or fail (same id, different values), and rewrite.
5. Move each file to its run-unique key (`core.keys.staged_trades_file_key`: inside the table's data
   directory, `year=/month=/day=/symbol=/<run>-part-N.snappy.parquet`; a rename, or a server-side copy
   on S3: no second pass over the data), then write the manifest (`core.staged`) with the check
   outcomes, then report them. Nothing is committed to a table here: no reader sees the files until
   market_data/trades_binance publishes the manifest, and only if its blocking checks passed.

Each file holds every table column, the partition columns included: Spark's partitionBy drops the
column it partitions by, so the stage partitions by a copy of `day` (DAY_DIRECTORY) instead, and the
catalog can take each file's partition from its own statistics.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field

from market_etl.core.checks import (
    CHECKS_BY_NAME,
    RULE_CHECKS,
    CheckOutcome,
    contiguity_outcome,
    reconciliation_outcome,
    rule_check_outcome,
)
from market_etl.core.keys import (
    RUN_ID_PATTERN,
    TradePartition,
    UpstreamMissing,
    Zone,
    lake_key,
    new_run_id,
    staged_manifest_key,
    staged_rejected_file_key,
    staged_scratch_prefix,
    staged_trades_file_key,
)
from market_etl.core.memory import peak_rss_bytes
from market_etl.core.versions import TRANSFORM_VERSION
from market_etl.core.metadata import (
    COLUMN_SCHEMA,
    ROW_COUNT,
    ColumnSchema,
    days_table,
    missing_days,
    pipes_metadata,
    quarantine_markdown,
)
from market_etl.core.staged import StagedCheck, StagedFile, StagedVersion
from market_etl.core.tables import TRADES_COLUMNS, TRADES_PARTITION_KEYS
# The rules and everything else no engine needs Spark for; the Spark transforms (`market_etl.core.trades`,
# which imports pyspark: ~0.3 s a process) are imported by the Spark engine's functions only.
from market_etl.core.rules import (
    RULES,
    IdLayout,
    SourceError,
    SourceLayout,
    analyse_segments,
    rules_of_check,
    source_layout,
    time_unit_of,
)
from market_etl.stages._stage import open_stage_pipes, parse_stage_args, stage_parser
from market_etl.lake import Lake, open_lake

ENGINE = "spark"
#: The directory column Spark partitions the scratch output by: a copy of `day`, so `day` stays in the files.
DAY_DIRECTORY = "_day"
_SCRATCH_PART = re.compile(rf"{DAY_DIRECTORY}=(\d+)/(part-[^/]*\.parquet)")
MAX_FIRST_LINE = 64 * 1024
log = logging.getLogger(__name__)  # phase lines; `main` forwards them to the Pipes log (the run's log in the UI)
MAX_CONFLICTS_LISTED = 10


@dataclass
class EtlResult:
    """What one run did: the materialisation metadata and the checks' outcomes."""

    partition: TradePartition
    metadata: dict = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    data_version: str | None = None


@dataclass(frozen=True)
class Paths:
    """Where this partition's data is read and where this run writes (keys built by core.keys only)."""

    source: str
    scratch: str

    @classmethod
    def of(cls, partition: TradePartition, run: str) -> "Paths":
        return cls(source=lake_key(Zone.RAW_UNZIPPED, partition), scratch=staged_scratch_prefix(partition, run))

    @property
    def staged_trades(self) -> str:
        return f"{self.scratch}/processed"

    @property
    def staged_deduplicated(self) -> str:
        return f"{self.scratch}/deduplicated"

    @property
    def staged_rejected(self) -> str:
        return f"{self.scratch}/rejected"


def preflight(lake: Lake, partition: TradePartition) -> SourceLayout:
    """The checks that need no Spark: the source exists, its first line says header or not, seven columns."""
    key = lake_key(Zone.RAW_UNZIPPED, partition)
    if not lake.exists(key):
        raise UpstreamMissing(f"{partition}: no CSV at {lake.uri(key)}; "
                              "materialise raw_unzipped/trades_csv for this partition first")
    with lake.open_read(key) as f:
        first = f.readline(MAX_FIRST_LINE).decode("utf-8", errors="replace")
    if not first.strip():
        raise SourceError(f"{lake.uri(key)} is empty or starts with a blank line: expected Binance trade rows")
    return source_layout(first)


#: Set when the JVM starts (local runs; Glue starts its own): the throughput collector, no concurrent GC
#: threads competing with the task threads for two cores (measured 42 vs 45 CPU-s per 10M rows for G1).
LAUNCH_CONF = {"spark.driver.extraJavaOptions": "-XX:+UseParallelGC"}
#: Dictionary encoding only for price (it repeats: ~3 bytes a row): ids and times are unique, and on
#: real-like data quantity and quote_qty fill the dictionary page, give up and fall back to plain anyway.
PLAIN_ENCODED = ("trade_id", "trade_time", "quantity", "quote_qty")


#: Spark's default split size; the stage evens splits out below it, down to a size worth a task.
MAX_SPLIT_BYTES = 128 * 1024 * 1024
MIN_SPLIT_BYTES = 16 * 1024 * 1024


def split_bytes(source_bytes: int, cores: int) -> int:
    """A split size at most MAX_SPLIT_BYTES that cuts the source into a multiple of `cores` equal tasks.

    With Spark's fixed 128 MiB a 2.3 GB month is 17 full tasks and a sliver: one core idles through
    the last round. Equal tasks in full rounds keep every core busy to the end.
    """
    rounds = max(1, -(-source_bytes // (MAX_SPLIT_BYTES * cores)))
    return max(MIN_SPLIT_BYTES, -(-source_bytes // (rounds * cores)))


def configure(spark, source_bytes: int) -> None:
    """Job settings on top of core.spark's session defaults (UTC, TIMESTAMP_MICROS, ...)."""
    cores = spark.sparkContext.defaultParallelism
    conf = {
        "spark.sql.files.maxPartitionBytes": str(split_bytes(source_bytes, cores)),
        # A task keeps one file open per day it meets instead of Spark sorting by partition columns
        # first: rows reach each day file in our trade-time order. A month has at most 31 days.
        "spark.sql.maxConcurrentOutputFileWriters": "32",
        # Few shuffle partitions: shuffles only happen on the rare dedupe path, over one month.
        "spark.sql.shuffle.partitions": str(max(4, 2 * cores)),
    }
    for key, value in conf.items():
        spark.conf.set(key, value)
    # No _SUCCESS markers in scratch directories (the manifest is what says a version is complete).
    spark.sparkContext._jsc.hadoopConfiguration().set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    # Parquet warns once per file opened when a task holds many day files at once (a small month is one
    # task writing all its days): it only shrinks row groups to fit the heap, nothing to act on.
    jvm = spark.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.parquet.hadoop.MemoryManager", jvm.org.apache.logging.log4j.Level.ERROR)


def write_trades(trades, uri: str) -> None:
    """Day files under `uri/_day=D/`, each with every column of PROCESSED_SCHEMA (day, year, month, symbol too)."""
    from pyspark.sql import functions as F

    writer = trades.withColumn(DAY_DIRECTORY, F.col("day")).write.mode("overwrite").partitionBy(DAY_DIRECTORY)
    for column in PLAIN_ENCODED:
        writer = writer.option(f"parquet.enable.dictionary#{column}", "false")
    writer.option("compression", "snappy").parquet(uri)


def read_staged(spark, uri: str):
    """Scratch trades with their partition columns, typed as written (no schema inference pass); the
    directory column Spark discovers is dropped (a projection: row order is kept)."""
    from market_etl.core.trades import PROCESSED_SCHEMA

    return spark.read.schema(PROCESSED_SCHEMA).parquet(uri).select(*PROCESSED_SCHEMA.fieldNames())


def layout_of(spark, uri: str) -> IdLayout:
    """Uniqueness and gaps of the ids in the staged Parquet; sorts the ids only if file order cannot tell."""
    from market_etl.core.trades import id_segments, ids_in_order

    trades = read_staged(spark, uri).select("trade_id")
    layout = analyse_segments(tuple(r) for r in id_segments(trades).select("n", "first_id", "last_id").collect())
    if layout is None:
        layout = analyse_segments((tuple(r) for r in id_segments(ids_in_order(trades))
                                   .select("n", "first_id", "last_id").collect()), ids_sorted=True)
    return layout


def deduplicate(spark, staged_uri: str, out_uri: str) -> int:
    """Drop exact duplicate rows (returns how many); the same id with different values fails the run."""
    from pyspark.sql import functions as F

    from market_etl.core.trades import drop_exact_duplicates, duplicated_ids, sorted_within_days

    staged = read_staged(spark, staged_uri)
    duplicated = duplicated_ids(staged).cache()
    conflicts = duplicated.where(F.col("variants") > 1).orderBy("trade_id").limit(MAX_CONFLICTS_LISTED).collect()
    if conflicts:
        n = duplicated.where(F.col("variants") > 1).count()
        raise SourceError(
            f"{n} trade id(s) appear with different values, e.g. "
            + ", ".join(str(r["trade_id"]) for r in conflicts)
            + ": the source contradicts itself, nothing was written; check the upstream file"
        )
    removed = duplicated.agg(F.sum(F.col("copies") - 1)).first()[0] or 0
    duplicated.unpersist()
    write_trades(sorted_within_days(drop_exact_duplicates(staged).repartition("day")), out_uri)
    return int(removed)


def quarantine_summary(spark, uri: str) -> tuple[dict[str, int], dict[str, tuple[list[int], list[str]]]]:
    """Rows per rule in the written quarantine, and per check its first offending ids and lines."""
    from pyspark.sql import functions as F

    rejected = spark.read.parquet(uri).withColumn("id", F.split("line", ",")[0].cast("long"))
    counts = {r["rule"]: r["count"] for r in rejected.groupBy("rule").count().collect()}
    samples = {}
    for check in RULE_CHECKS:
        names = [r.name for r in rules_of_check(check)]
        if any(counts.get(n) for n in names):
            rows = (rejected.where(F.col("rule").isin(names)).orderBy(F.col("id").asc_nulls_last(), "line")
                    .limit(10).collect())
            samples[check] = ([r["id"] for r in rows if r["id"] is not None], [r["line"] for r in rows])
    return counts, samples


def scratch_day_files(lake: Lake, root: str) -> dict[int, list[str]]:
    """The Parquet files Spark wrote under `root/_day=D/`, by day, in Spark's task order (side files excluded)."""
    prefix = root.rstrip("/") + "/"
    by_day: dict[int, list[str]] = {}
    for obj in lake.list(prefix):
        match = _SCRATCH_PART.fullmatch(obj.key[len(prefix):])
        if match:
            by_day.setdefault(int(match.group(1)), []).append(obj.key)
    return {day: sorted(keys) for day, keys in sorted(by_day.items())}


def parquet_rows(lake: Lake, key: str) -> int:
    """Rows of a Parquet file, from its footer only (lake.open_read is seekable)."""
    import pyarrow.parquet as pq

    with lake.open_read(key) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def move_to_staged_keys(lake: Lake, partition: TradePartition, run: str, trades_root: str,
                        rejected_root: str | None) -> tuple[tuple[StagedFile, ...], tuple[StagedFile, ...]]:
    """Give the scratch files their run-unique staged keys (renames / server-side copies); returns what moved."""
    trades = []
    for day, keys in scratch_day_files(lake, trades_root).items():
        for part, key in enumerate(keys):
            target = staged_trades_file_key(partition, day, run, part)
            rows = parquet_rows(lake, key)
            lake.move(key, target)
            trades.append(StagedFile(target, rows, lake.info(target).size))
    rejected = []
    if rejected_root is not None:
        prefix = rejected_root.rstrip("/") + "/"
        parts = sorted(o.key for o in lake.list(prefix) if re.fullmatch(r"part-[^/]*\.parquet", o.key[len(prefix):]))
        for part, key in enumerate(parts):
            target = staged_rejected_file_key(partition, run, part)
            rows = parquet_rows(lake, key)
            lake.move(key, target)
            rejected.append(StagedFile(target, rows, lake.info(target).size))
    return tuple(trades), tuple(rejected)


def clear(lake: Lake, prefix: str) -> None:
    """Delete everything under `prefix` (a local directory goes entirely, empty subdirectories included)."""
    import shutil

    from market_etl.lake import LocalLake

    if isinstance(lake, LocalLake):
        shutil.rmtree(lake.path(prefix), ignore_errors=True)
    else:
        lake.delete_prefix(prefix.rstrip("/") + "/")


class Stopwatch:
    """Seconds per phase of the run, for the metadata (where the time went, run by run).

    Each phase is logged as it starts (the first lap starts with the watch, the next with the previous
    lap) and as it ends with its seconds: `main` forwards these lines to the run's log in the UI.
    """

    def __init__(self, first_phase: str = "") -> None:
        self.started = self._last = time.perf_counter()
        self.phases: dict[str, float] = {}
        if first_phase:
            self.start(first_phase)

    def start(self, phase: str) -> None:
        log.info(f"etl: {phase} started")

    def lap(self, phase: str, next_phase: str = "") -> None:
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        self.phases[phase] = round(self.phases.get(phase, 0.0) + seconds, 2)
        log.info(f"etl: {phase} finished in {seconds:.1f}s")
        if next_phase:
            self.start(next_phase)

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started


def run_etl(spark, partition: TradePartition, lake: Lake, *, reject_tolerance: float = 0.0,
            run_id: str | None = None, dagster_run_id: str | None = None, force: bool = False) -> EtlResult:
    """The whole stage for one partition on `spark`: write the run's files, audit them, write the manifest.

    Skips (metadata `status` "up to date", with the reason) when `up_to_date` finds nothing changed, unless
    `force`, as the DuckDB engine does.

    Raises SchemaDrift / SourceError / UpstreamMissing for a partition that cannot be processed (no
    manifest is written, nothing changes for readers); bad rows, within the tolerance or not, are
    results: checks recorded in the manifest and reported, not exceptions.
    """
    if not force and (previous := up_to_date(lake, partition, reject_tolerance)) is not None:
        return previous
    run_id = run_id or new_run_id()
    paths = Paths.of(partition, run_id)
    layout = preflight(lake, partition)
    try:
        return _write_and_audit(spark, partition, lake, paths, layout, reject_tolerance, run_id, dagster_run_id)
    finally:
        clear(lake, paths.scratch)


def _write_and_audit(spark, partition: TradePartition, lake: Lake, paths: Paths, layout: SourceLayout,
                     reject_tolerance: float, run_id: str, dagster_run_id: str | None) -> EtlResult:
    from pyspark.sql import Observation

    from market_etl.core.trades import (
        apply_rules,
        parse_fields,
        quarantine_rows,
        sorted_within_days,
        split_fields,
        valid_trades,
        with_partition_columns,
    )

    clock = Stopwatch("parse_validate_write")
    configure(spark, lake.info(paths.source).size)

    observation = Observation()
    checked = apply_rules(parse_fields(split_fields(spark.read.text(lake.uri(paths.source)), layout)), partition,
                          observation)
    trades = with_partition_columns(sorted_within_days(valid_trades(checked)), partition)
    write_trades(trades, lake.uri(paths.staged_trades))
    metrics = observation.get
    clock.lap("parse_validate_write")
    time_unit = time_unit_of(metrics)  # fails on mixed units, before a manifest exists
    rows_in, rows_rejected_seen = int(metrics["rows_in"]), int(metrics["rows_rejected"])

    rejected_by_rule: dict[str, int] = {}
    samples: dict = {}
    if rows_rejected_seen:
        clock.start("quarantine")
        (quarantine_rows(checked, partition, run_id).repartition(1).write.mode("overwrite")
         .option("compression", "snappy").parquet(lake.uri(paths.staged_rejected)))
        rejected_by_rule, samples = quarantine_summary(spark, lake.uri(paths.staged_rejected))
        clock.lap("quarantine")

    clock.start("verify_ids")
    trades_root = paths.staged_trades
    ids = layout_of(spark, lake.uri(trades_root)) if rows_in > rows_rejected_seen else analyse_segments(())
    clock.lap("verify_ids")
    duplicates_removed = 0
    if not ids.unique:
        clock.start("deduplicate")
        duplicates_removed = deduplicate(spark, lake.uri(trades_root), lake.uri(paths.staged_deduplicated))
        trades_root = paths.staged_deduplicated
        ids = layout_of(spark, lake.uri(trades_root))
        clock.lap("deduplicate")

    clock.start("stage_files")
    # The files the checks below judge are exactly these bytes: moving gives them their keys, no rewrite.
    trades_files, rejected_files = move_to_staged_keys(lake, partition, run_id, trades_root,
                                                       paths.staged_rejected if rows_rejected_seen else None)
    clock.lap("stage_files")

    rows_rejected = sum(rejected_by_rule.values())
    checks = [rule_check_outcome(check, rows_in, rejected_by_rule, reject_tolerance, *samples.get(check, ((), ())))
              for check in RULE_CHECKS]
    checks.append(reconciliation_outcome(rows_in, ids.rows, rows_rejected, duplicates_removed))
    checks.append(contiguity_outcome(ids))
    source_sha256 = (lake.read_meta(paths.source) or {}).get("source_sha256")
    version = StagedVersion(
        partition=partition, run_id=run_id, source_sha256=source_sha256, transform_version=TRANSFORM_VERSION,
        engine=ENGINE, trades_files=trades_files, rejected_files=rejected_files, rows_in=rows_in,
        rows_written=ids.rows, rows_rejected=rows_rejected, duplicates_removed=duplicates_removed,
        checks=tuple(StagedCheck(c.name, c.passed, CHECKS_BY_NAME[c.name].blocking, c.severity) for c in checks),
        dagster_run_id=dagster_run_id,
    )
    manifest_key = staged_manifest_key(partition, run_id)
    lake.put_bytes(manifest_key, version.to_json().encode())
    seconds = clock.total
    metadata = {
        "run_id": run_id,
        "manifest_key": manifest_key,
        "manifest_uri": lake.uri(manifest_key),
        "publishable": version.publishable,
        "failed_blocking_checks": list(version.failed_blocking_checks),
        "source_sha256": source_sha256,
        "rows_in": rows_in,
        "rows_written": ids.rows,
        "rows_rejected": rows_rejected,
        "rejected_by_reason": {rule.reason: int(rejected_by_rule[rule.name]) for rule in RULES
                               if rejected_by_rule.get(rule.name)},
        "duplicates_removed": duplicates_removed,
        "deduplication": "ran: ids repeated in the source" if duplicates_removed else "skipped: ids already unique",
        "days_written": len({f.key.split("/day=")[1].split("/")[0] for f in trades_files}),
        "files_written": len(trades_files),
        "output_bytes": sum(f.bytes for f in trades_files),
        "first_trade_id": ids.first_id,
        "last_trade_id": ids.last_id,
        "id_gaps": len(ids.gaps),
        "missing_ids": ids.missing_ids,
        "time_unit": time_unit,
        "header": layout.header is not None,
        "engine": ENGINE,
        "etl_seconds": round(seconds, 2),
        "spark_seconds": round(seconds, 2),
        "phase_seconds": clock.phases,
        "rows_per_second": round(rows_in / seconds),
        "processed_uri": lake.uri(lake_key(Zone.PROCESSED, partition)),
        "rejected_uri": lake.uri(lake_key(Zone.REJECTED, partition)) if rows_rejected else None,
        "status": "built",
    }
    result = EtlResult(partition, metadata, checks, data_version(lake, paths.source))
    if result.data_version is not None:
        record_build(lake, result, reject_tolerance)
    # Typed values for the UI (tables, schema), derived from the staged files; not part of the JSON record.
    metadata.update(operator_metadata(partition, trades_files, metadata))
    return result


def operator_metadata(partition: TradePartition, trades_files, metadata: dict) -> dict:
    """Dagster's standard row count, the month's rows per day of this version (a missing day reads 0) and the
    quarantine table, from the staged files' own counts: the same for every engine, nothing re-read."""
    per_day: dict[int, int] = {}
    for f in trades_files:
        day = int(f.key.split("/day=", 1)[1].split("/", 1)[0])
        per_day[day] = per_day.get(day, 0) + f.rows
    return {
        ROW_COUNT: metadata["rows_written"],
        COLUMN_SCHEMA: ColumnSchema(TRADES_COLUMNS + TRADES_PARTITION_KEYS),
        "rows_per_day": days_table(partition, per_day),
        "days_without_rows": len(missing_days(partition, per_day)),
        "quarantine": quarantine_markdown(metadata["rejected_by_reason"], metadata["rows_in"]),
    }


def data_version(lake: Lake, source: str) -> str | None:
    """The raw archive's sha256 (recorded by the unzip stage) combined with TRANSFORM_VERSION."""
    source_sha256 = (lake.read_meta(source) or {}).get("source_sha256")
    if not source_sha256:
        return None
    return hashlib.sha256(f"{source_sha256}:{TRANSFORM_VERSION}".encode()).hexdigest()[:32]


def last_build_key(partition: TradePartition) -> str:
    """Where the last build of a partition is recorded (a sidecar beside its staged manifests)."""
    return staged_manifest_key(partition, new_run_id()).rsplit("/", 1)[0] + "/last-build"


def up_to_date(lake: Lake, partition: TradePartition, reject_tolerance: float) -> EtlResult | None:
    """The last build's result when nothing changed since: the same data version (source archive sha256 and
    TRANSFORM_VERSION), the same tolerance, its manifest and every file it lists still present. Else None.

    Whichever engine built it: both write the same files and report the same results (the parity suite).
    """
    current = data_version(lake, lake_key(Zone.RAW_UNZIPPED, partition))
    last = lake.read_meta(last_build_key(partition)) or {}
    if current is None or last.get("data_version") != current or last.get("reject_tolerance") != reject_tolerance:
        return None
    manifest = last.get("manifest")
    if not manifest or not lake.exists(manifest):
        return None
    staged = StagedVersion.from_json(lake.get_bytes(manifest))
    if not all(lake.exists(f.key) for f in staged.trades_files + staged.rejected_files):
        return None

    metadata = {**last["metadata"], "status": "up to date",
                "skipped_because": f"source and transform unchanged since run {staged.run_id} (data version {current})"}
    metadata.update(operator_metadata(partition, staged.trades_files, metadata))
    checks = [CheckOutcome(**c) for c in last["checks"]]
    return EtlResult(partition, metadata, checks, current)


def record_build(lake: Lake, result: EtlResult, reject_tolerance: float) -> None:
    """What `up_to_date` compares and returns next time; `result.metadata` as built (JSON values only)."""
    lake.write_meta(last_build_key(result.partition), {
        "data_version": result.data_version, "reject_tolerance": reject_tolerance,
        "manifest": staged_manifest_key(result.partition, result.metadata["run_id"]),
        "metadata": result.metadata,
        "checks": [{"name": c.name, "passed": c.passed, "severity": c.severity, "metadata": c.metadata}
                   for c in result.checks],
    })


def jvm_usage(spark) -> tuple[int, float]:
    """Peak RSS (VmHWM, bytes) and CPU seconds of the JVM PySpark started; zeros where Spark runs elsewhere (Glue)."""
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    if proc is None:
        return 0, 0.0
    try:
        with open(f"/proc/{proc.pid}/status") as status:
            peak = next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")), 0)
        with open(f"/proc/{proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return peak, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0, 0.0




#: MARKET_ETL_ETL_ENGINE: the vectorised single-node engine (default for a local lake) or Spark (Glue, S3 lakes).
ENGINES = ("duckdb", "spark")


def select_engine(lake: Lake, env=os.environ) -> str:
    """The engine this run uses: MARKET_ETL_ETL_ENGINE, else duckdb on a local lake and spark on S3 (Glue)."""
    from market_etl.lake import LocalLake

    chosen = env.get("MARKET_ETL_ETL_ENGINE", "").strip().lower()
    if not chosen:
        return "duckdb" if isinstance(lake, LocalLake) else "spark"
    if chosen not in ENGINES:
        raise ValueError(f"MARKET_ETL_ETL_ENGINE={chosen!r}: expected one of {', '.join(ENGINES)}")
    return chosen


def run_stage(args) -> EtlResult:
    """What the entry point does between parsing and reporting: run the selected engine, measure."""
    lake = open_lake(args.lake, s3_endpoint_url=args.s3_endpoint_url, region=args.aws_region)
    if select_engine(lake) == "duckdb":
        from market_etl.stages.engines.duckdb_engine import run_duckdb_etl

        return with_own_usage(run_duckdb_etl(args.partition, lake, reject_tolerance=args.reject_tolerance,
                                             run_id=args.run_id, dagster_run_id=args.dagster_run_id))
    return run_spark_stage(args, lake)


def run_spark_stage(args, lake: Lake) -> EtlResult:
    """The Spark engine: start Spark, run, stop, measure."""
    from market_etl.core.spark import build_spark_session

    if (previous := up_to_date(lake, args.partition, args.reject_tolerance)) is not None:
        return with_own_usage(previous)  # no JVM started for a partition where nothing changed
    preflight(lake, args.partition)  # a missing or drifted file fails in a second, not after a JVM start
    started = time.perf_counter()
    # master=None: local[*] when started from Python, the cluster's master on Glue.
    spark = build_spark_session(f"market-etl-etl-{args.symbol}-{args.month}", master=None, extra_conf=LAUNCH_CONF)
    jvm_start_seconds = time.perf_counter() - started
    try:
        result = run_etl(spark, args.partition, lake, reject_tolerance=args.reject_tolerance, run_id=args.run_id,
                         dagster_run_id=args.dagster_run_id)
        jvm_peak, jvm_cpu = jvm_usage(spark)
    finally:
        spark.stop()
    result.metadata["jvm_start_seconds"] = round(jvm_start_seconds, 2)
    # This process plus the JVM it started (local runs; on Glue the JVM is Glue's).
    return with_own_usage(result, jvm_peak, jvm_cpu)


def with_own_usage(result: EtlResult, other_peak_rss: int = 0, other_cpu_seconds: float = 0.0) -> EtlResult:
    """`result` with this process's peak RSS and CPU seconds (plus those of a JVM it started) in its metadata."""
    own = os.times()
    result.metadata.update({
        "peak_rss_mb": round((peak_rss_bytes() + other_peak_rss) / 1e6, 1),
        "cpu_seconds": round(own.user + own.system + other_cpu_seconds, 1),
    })
    return result


class PipesLogHandler(logging.Handler):
    """Python log records of the stage as Pipes log lines."""

    def __init__(self, pipes) -> None:
        super().__init__()
        self.pipes = pipes

    def emit(self, record: logging.LogRecord) -> None:
        self.pipes.log.info(self.format(record))


def stage_arguments(argv=None):
    parser = stage_parser(__doc__)
    parser.add_argument("--reject-tolerance", type=float, default=0.0,
                        help="fraction of the source rows a rule may quarantine before its check fails (default 0)")
    parser.add_argument("--run-id", default=None,
                        help="names this run's files and manifest (core.keys.new_run_id(); default: a fresh one)")
    parser.add_argument("--dagster-run-id", default=None, help="recorded in the manifest and the table's history")
    args = parse_stage_args(parser, argv)
    if args.run_id is not None and not RUN_ID_PATTERN.fullmatch(args.run_id):
        parser.error(f"--run-id {args.run_id!r}: expected {RUN_ID_PATTERN.pattern}")
    return args


def main(argv=None) -> None:
    args = stage_arguments(argv)
    with open_stage_pipes(argv) as pipes:
        log.addHandler(PipesLogHandler(pipes))
        log.setLevel(logging.INFO)
        result = run_stage(args)
        m = result.metadata
        if m.get("status") == "up to date":
            pipes.log.info(f"{args.partition}: up to date ({m['skipped_because']}); skipped")
        else:
            pipes.log.info(f"{args.partition}: {m['rows_in']:,} rows in, {m['rows_written']:,} written over "
                           f"{m['days_written']} days (staged as run {m['run_id']}), {m['rows_rejected']:,} rejected, "
                           f"{m['duplicates_removed']:,} duplicates removed in {m['etl_seconds']}s by {m['engine']} "
                           f"({m['rows_per_second']:,} rows/s)")
        pipes.report_asset_materialization(metadata=pipes_metadata(m), data_version=result.data_version)
        for check in result.checks:
            pipes.report_asset_check(check.name, passed=check.passed, severity=check.severity,
                                     metadata=pipes_metadata(check.metadata))


if __name__ == "__main__":
    main()
