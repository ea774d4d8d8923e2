"""`market-etl bench catalog`: publish cost and query planning on the trades table as it grows.

The table is grown to each size (default 30, 100, 300, 1,000 and 3,000 symbol-months; one data file per
day, 30 days per symbol-month, like the ETL writes; symbol-months published month by month, 300 symbols a
month) in two ways:

- the bulk of it is generated cheaply: pyiceberg `DataFile` entries built directly (the statistics of a real
  day file, with the partition values and the bounds of trade_time, trade_id and the partition columns set
  for that symbol-day), committed as a few large fast appends. No Parquet file is written or read for them.
  Their manifests are laid out as real commits leave them: one per symbol-month when the table does not
  merge manifests on commit (`load_table`'s setting), else one per commit.manifest.target-size-bytes of
  entries in publish order (what merging converges to);
- the last REAL_COMMITS symbol-months before each size are published for real: 30 small Parquet day
  files written, then `replace_partition` (the publish step's commit: delete that symbol-month's files,
  add the new ones, in one transaction, footers read for the statistics), each timed. Then REPUBLISHES
  commits replace symbol-months from the middle of the table (a re-run's republish: 30 files removed, 30
  added).

At each size, planning is timed (best of 5; pyiceberg reads the manifest list and the manifests, never a
data file): one symbol-day (the filter of `vwap_1m`), one symbol-month, the whole table (what the local
views list after every commit). Reported beside them: the snapshots, the manifests of the current snapshot
and their bytes, the manifest list's and the metadata JSON's size (both rewritten by every commit). The
files each plan returns are checked against what the table must hold.

Snapshots: a real history has one per commit (two for a republish); the generated one has one per batch.
Maintenance expires them after the retention (`MARKET_ETL_SNAPSHOT_RETENTION_DAYS`, default 7), so their
number follows the publish rate, not the table's size. At the largest size the commits are timed again
with RETAINED_SNAPSHOTS publish snapshots in the metadata (`add_publish_history`, one commit), as a backfill
of that many symbol-months within the retention leaves it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from statistics import median

BEGIN, END = "<!-- bench catalog -->", "<!-- /bench catalog -->"  # its section of the output file
CHECKPOINTS = (30, 100, 300, 1000, 3000)
DAYS = 30  # one file per day, a 30-day month
SYMBOLS = 300  # about Binance's spot USDT pairs
MONTHS = (1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)  # of 2024 per symbol: those with 30 days or more
FIRST_BATCH = 100  # symbol-months in the first generated fast append; later ones fill a manifest of the
# table's commit.manifest.target-size-bytes, as manifest merging on commit leaves them
RETAINED_SNAPSHOTS = (1000, 3000)  # a week's publishes during a backfill, before maintenance expires them
REAL_COMMITS = 3  # real publishes of new symbol-months before each checkpoint
REPUBLISHES = 2  # real republishes of symbol-months from the middle of the table at each checkpoint
ROWS_PER_DAY = 1_000_000  # what a generated day file claims to hold (a busy symbol)
BYTES_PER_ROW = 20  # Snappy Parquet of the trades columns, about


def symbol_month(i: int):
    """The i-th symbol-month published: month by month, every symbol of a month before the next month."""
    from market_etl.core.keys import TradePartition

    month = i // SYMBOLS
    return TradePartition(f"S{i % SYMBOLS:04d}USDT", f"{2024 + month // len(MONTHS)}-{MONTHS[month % len(MONTHS)]:02d}")


def day_start(partition, day: int) -> dt.datetime:
    return dt.datetime(partition.year, partition.month_number, day, tzinfo=dt.timezone.utc)


def write_day_file(root: Path, partition, day: int, run: str, rows: int = 24) -> str:
    """A real (small) day file as the ETL writes it: the table's columns, trades spread over the day."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from market_etl.core.keys import staged_trades_file_key

    key = staged_trades_file_key(partition, day, run)
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    start = day_start(partition, day)
    first_id = (day - 1) * rows
    table = pa.table({
        "trade_id": pa.array(range(first_id, first_id + rows), pa.int64()),
        "price": pa.array([Decimal("60000.5") + i for i in range(rows)], pa.decimal128(18, 8)),
        "quantity": pa.array([Decimal("0.001") * (i + 1) for i in range(rows)], pa.decimal128(28, 8)),
        "quote_qty": pa.array([Decimal("60.0005") * (i + 1) for i in range(rows)], pa.decimal128(28, 8)),
        "trade_time": pa.array([start + dt.timedelta(seconds=86_399 * i / max(1, rows - 1)) for i in range(rows)],
                               pa.timestamp("us", tz="UTC")),
        "is_buyer_maker": pa.array([i % 2 == 0 for i in range(rows)]),
        "is_best_match": pa.array([True] * rows),
        "year": pa.array([partition.year] * rows, pa.int32()),
        "month": pa.array([partition.month_number] * rows, pa.int32()),
        "day": pa.array([day] * rows, pa.int32()),
        "symbol": pa.array([partition.symbol] * rows),
    })
    pq.write_table(table, path, compression="snappy")
    return key


class DayFileGenerator:
    """`DataFile` entries for generated symbol-days, shaped like one real day file's (its statistics)."""

    def __init__(self, table, template_uri: str):
        from pyiceberg.io.pyarrow import parquet_file_to_data_file
        from pyiceberg.manifest import DATA_FILE_TYPE

        self.metadata = table.metadata
        self.template = parquet_file_to_data_file(table.io, table.metadata, template_uri)
        self.names = [f.name for f in DATA_FILE_TYPE[self.metadata.format_version].fields]
        schema = self.metadata.schema()
        self.ids = {name: schema.find_field(name).field_id for name in
                    ("trade_id", "trade_time", "year", "month", "day", "symbol")}
        self.types = {name: schema.find_field(name).field_type for name in self.ids}
        self.spec = self.metadata.spec()

    def data_file(self, location: str, partition, day: int, run: str):
        from pyiceberg.conversions import to_bytes
        from pyiceberg.manifest import DataFile
        from pyiceberg.typedef import Record

        from market_etl.core.keys import staged_trades_file_key

        rows = ROWS_PER_DAY
        start = day_start(partition, day)
        micros = int(start.timestamp()) * 10**6
        first_id = (day - 1) * rows
        values = {"trade_id": (first_id, first_id + rows - 1), "trade_time": (micros, micros + 86_400 * 10**6 - 1),
                  "year": (partition.year,) * 2, "month": (partition.month_number,) * 2, "day": (day,) * 2,
                  "symbol": (partition.symbol,) * 2}
        lower, upper = dict(self.template.lower_bounds or {}), dict(self.template.upper_bounds or {})
        for name, (low, high) in values.items():
            if self.ids[name] in lower:  # bounds the table's metrics mode keeps (write.metadata.metrics.*)
                lower[self.ids[name]] = to_bytes(self.types[name], low)
                upper[self.ids[name]] = to_bytes(self.types[name], high)
        scale = rows / self.template.record_count
        fields = {name: getattr(self.template, name) for name in self.names}
        partition_values = {"year": partition.year, "month": partition.month_number, "day": day,
                            "symbol": partition.symbol}
        fields.update(
            file_path=f"{location}/{staged_trades_file_key(partition, day, run)}",
            partition=Record(*[partition_values[f.name] for f in self.spec.fields]),
            record_count=rows, file_size_in_bytes=rows * BYTES_PER_ROW,
            column_sizes={k: int(v * scale) for k, v in (self.template.column_sizes or {}).items()},
            value_counts={k: rows for k in (self.template.value_counts or {})},
            lower_bounds=lower, upper_bounds=upper,
        )
        data_file = DataFile.from_args(_table_format_version=self.metadata.format_version, **fields)
        data_file.spec_id = self.metadata.default_spec_id
        return data_file


def merged_batch(table, symbol_months: int) -> int:
    """Symbol-months per manifest of the size merging on commit makes (commit.manifest.target-size-bytes)."""
    from pyiceberg.table import TableProperties

    snapshot = table.current_snapshot()
    added = [m for m in snapshot.manifests(table.io) if m.added_snapshot_id == snapshot.snapshot_id]
    target = int(table.metadata.properties.get(TableProperties.MANIFEST_TARGET_SIZE_BYTES,
                                               TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT))
    return max(1, int(target / (sum(m.manifest_length for m in added) / symbol_months)))


def manifest_merging(table) -> bool:
    from pyiceberg.table import TableProperties
    from pyiceberg.utils.properties import property_as_bool

    return property_as_bool(table.metadata.properties, TableProperties.MANIFEST_MERGE_ENABLED,
                            TableProperties.MANIFEST_MERGE_ENABLED_DEFAULT)


def append_generated(table, generator: DayFileGenerator, location: str, partitions, run: str) -> None:
    """One fast append (one snapshot) of every day file of `partitions`, in the manifests real commits leave:
    one manifest for all of them when the table merges manifests on commit (the batch is sized as a merged
    manifest), else one manifest per symbol-month, as each publish's commit writes."""
    from pyiceberg.manifest import ManifestEntry, ManifestEntryStatus
    from pyiceberg.table.snapshots import Operation
    from pyiceberg.table.update.snapshot import _FastAppendFiles

    from market_etl.lake.iceberg import ACTION

    groups = [[generator.data_file(location, partition, day, run) for day in range(1, DAYS + 1)]
              for partition in partitions]
    if manifest_merging(table):
        groups = [[f for group in groups for f in group]]

    class GroupedAppend(_FastAppendFiles):
        """pyiceberg's fast append writes one manifest for everything added; this one writes one per group."""

        def _manifests(self):
            written = []
            for files in groups:
                with self.new_manifest_writer(spec=self._transaction.table_metadata.spec()) as writer:
                    for data_file in files:
                        writer.add(ManifestEntry.from_args(status=ManifestEntryStatus.ADDED,
                                                           snapshot_id=self._snapshot_id, sequence_number=None,
                                                           file_sequence_number=None, data_file=data_file))
                written.append(writer.to_manifest_file())
            return written + self._existing_manifests()

    with table.transaction() as tx:
        with GroupedAppend(operation=Operation.APPEND, transaction=tx, io=table.io,
                           snapshot_properties={ACTION: "bench-generated"}) as add:
            for files in groups:
                for data_file in files:
                    add.append_data_file(data_file)


def add_publish_history(table, partitions, run: str) -> None:
    """One snapshot per symbol-month of `partitions`, as each publish leaves in the table's metadata (summary
    with the publish's properties and counts, snapshot-log entry), committed at once: the metadata a table
    carries until maintenance expires its snapshots. They all list the current snapshot's manifests."""
    from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
    from pyiceberg.table.snapshots import Operation, Snapshot, Summary
    from pyiceberg.table.update import AddSnapshotUpdate, AssertRefSnapshotId, SetSnapshotRefUpdate

    from market_etl.core.keys import staged_manifest_key
    from market_etl.lake.iceberg import ACTION, DAGSTER_RUN_ID, MANIFEST, PARTITION, RUN_ID, SOURCE_SHA256

    metadata = table.metadata
    head = metadata.current_snapshot()
    totals = {k: v for k, v in head.summary.additional_properties.items() if k.startswith("total-")}
    updates, parent = [], head.snapshot_id
    for i, partition in enumerate(partitions):
        snapshot_id = metadata.new_snapshot_id()
        summary = Summary(Operation.APPEND, **totals, **{
            "added-data-files": str(DAYS), "added-records": str(DAYS * ROWS_PER_DAY),
            "added-files-size": str(DAYS * ROWS_PER_DAY * BYTES_PER_ROW), "changed-partition-count": str(DAYS),
            RUN_ID: run, PARTITION: str(partition), ACTION: "publish", SOURCE_SHA256: "0" * 64,
            MANIFEST: staged_manifest_key(partition, run), DAGSTER_RUN_ID: "00000000-0000-0000-0000-000000000000"})
        updates += [AddSnapshotUpdate(snapshot=Snapshot(
                        snapshot_id=snapshot_id, parent_snapshot_id=parent,
                        sequence_number=metadata.last_sequence_number + i + 1, manifest_list=head.manifest_list,
                        summary=summary, schema_id=metadata.current_schema_id)),
                    SetSnapshotRefUpdate(snapshot_id=snapshot_id, parent_snapshot_id=parent, ref_name=MAIN_BRANCH,
                                         type=SnapshotRefType.BRANCH)]
        parent = snapshot_id
    with table.transaction() as tx:
        tx._apply(tuple(updates), (AssertRefSnapshotId(snapshot_id=head.snapshot_id, ref=MAIN_BRANCH),))


def metadata_dir(table) -> tuple[int, int]:
    """Metadata JSON files in the table's metadata/ directory, and their bytes (old versions included)."""
    from market_etl.lake.iceberg import local_path

    files = list(Path(local_path(table.metadata_location)).parent.glob("*.metadata.json"))
    return len(files), sum(f.stat().st_size for f in files)


def _best(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def table_shape(table) -> dict:
    """Snapshots, the current snapshot's manifests (count, bytes), its manifest list's and the metadata JSON's size
    (what every commit writes anew)."""
    from market_etl.lake.iceberg import local_path

    snapshot = table.current_snapshot()
    manifests = snapshot.manifests(table.io)
    return {"snapshots": len(table.snapshots()), "manifests": len(manifests),
            "manifest_bytes": sum(m.manifest_length for m in manifests),
            "manifest_list_bytes": os.path.getsize(local_path(snapshot.manifest_list)),
            "metadata_json_bytes": os.path.getsize(local_path(table.metadata_location))}


def publish_real(catalog, lake, root: Path, partition) -> float:
    """The publish step's commit of a freshly written 30-day month: seconds."""
    from market_etl.core.keys import new_run_id
    from market_etl.core.tables import TRADES
    from market_etl.lake.iceberg import replace_partition

    run_id = new_run_id()
    keys = [write_day_file(root, partition, day, run_id) for day in range(1, DAYS + 1)]
    started = time.perf_counter()
    commit = replace_partition(catalog, lake, TRADES, partition, keys, {}, run_id=run_id)
    seconds = time.perf_counter() - started
    if commit.files_added != DAYS:
        raise RuntimeError(f"bench catalog: {partition}: {commit.files_added} files committed, expected {DAYS}")
    return seconds


def publish_new(catalog, lake, root: Path, size: int, until: int) -> tuple[list[float], int]:
    """Publish symbol-months `size` .. `until` - 1 for real: their commit seconds, and the new size."""
    seconds = []
    while size < until:
        seconds.append(publish_real(catalog, lake, root, symbol_month(size)))
        size += 1
    return seconds, size


def republish(catalog, lake, root: Path, size: int) -> list[float]:
    """Publish again, for real, REPUBLISHES symbol-months from the middle of the table: their commit seconds."""
    middle = range(size // 2, min(size, size // 2 + REPUBLISHES))
    return [publish_real(catalog, lake, root, symbol_month(i)) for i in middle]


def plan_filters(partition, day: int = 1):
    from pyiceberg.expressions import AlwaysTrue, And, EqualTo

    month = [EqualTo("year", partition.year), EqualTo("month", partition.month_number),
             EqualTo("symbol", partition.symbol)]
    return {"one_day": And(*month, EqualTo("day", day)), "one_month": And(*month), "whole_table": AlwaysTrue()}


def run(checkpoints=CHECKPOINTS, root: Path | None = None, first_batch: int = FIRST_BATCH,
        table_properties: dict[str, str] | None = None, retained_snapshots=(), log=print) -> list[dict]:
    """Grow a fresh table through `checkpoints` (symbol-months); one result per checkpoint. Then, at the last
    size, one result per count of `retained_snapshots`: the table given that many publish snapshots
    (`add_publish_history`), commit seconds and metadata measured again.

    `table_properties` are set on the table after `load_table` creates it (to measure an alternative).
    """
    from market_etl.core.keys import new_run_id
    from market_etl.core.tables import TRADES
    from market_etl.lake import LocalLake
    from market_etl.lake.iceberg import iceberg_uri, load_table, open_catalog

    own_root = root is None
    root = Path(tempfile.mkdtemp(prefix="bench-catalog-")) if own_root else Path(root)
    try:
        lake = LocalLake(root)
        catalog = open_catalog(lake)
        table = load_table(catalog, lake, TRADES)
        if table_properties:
            with table.transaction() as tx:
                tx.set_properties(**table_properties)
        template = symbol_month(0)
        generator = DayFileGenerator(table, iceberg_uri(lake, write_day_file(root, template, 1, new_run_id())))
        location = iceberg_uri(lake, "").rstrip("/")
        results, size, batch_size = [], 0, first_batch
        for checkpoint in sorted(set(checkpoints)):
            generated_until = max(size, checkpoint - REAL_COMMITS)
            started = time.perf_counter()
            while size < generated_until:
                batch = [symbol_month(i) for i in range(size, min(size + batch_size, generated_until))]
                append_generated(table, generator, location, batch, new_run_id())
                size += len(batch)
                if batch_size == first_batch and manifest_merging(table):
                    batch_size = merged_batch(table, len(batch))
            generate_seconds = time.perf_counter() - started
            commits, size = publish_new(catalog, lake, root, size, checkpoint)
            republishes = republish(catalog, lake, root, size)
            table = load_table(catalog, lake, TRADES)
            filters = plan_filters(symbol_month(size // 2))
            planned = {name: len(list(table.scan(row_filter=f).plan_files())) for name, f in filters.items()}
            expected = {"one_day": 1, "one_month": DAYS, "whole_table": DAYS * size}
            if planned != expected:
                raise RuntimeError(f"bench catalog at {size} symbol-months: planned {planned}, expected {expected}")
            result = {"symbol_months": size, "data_files": planned["whole_table"], **table_shape(table),
                      **{f"plan_{name}_s": _best(lambda f=f: list(table.scan(row_filter=f).plan_files()))
                         for name, f in filters.items()},
                      "commit_new_month_s": median(commits) if commits else None,
                      "commit_republish_s": median(republishes) if republishes else None,
                      "generate_s": generate_seconds, "load_average": os.getloadavg()[0]}
            results.append(result)
            log(f"bench catalog: {result}")
        for retained in sorted(set(retained_snapshots)):
            table = load_table(catalog, lake, TRADES)
            started = time.perf_counter()
            missing = retained - len(table.snapshots())
            if missing > 0:
                add_publish_history(table, [symbol_month(i % size) for i in range(missing)], new_run_id())
            generate_seconds = time.perf_counter() - started
            commits, size = publish_new(catalog, lake, root, size, size + REAL_COMMITS)
            republishes = republish(catalog, lake, root, size)
            table = load_table(catalog, lake, TRADES)
            files, size_bytes = metadata_dir(table)
            result = {"retained_snapshots": retained, "symbol_months": size, **table_shape(table),
                      "commit_new_month_s": median(commits), "commit_republish_s": median(republishes),
                      "metadata_dir_files": files, "metadata_dir_bytes": size_bytes,
                      "generate_s": generate_seconds, "load_average": os.getloadavg()[0]}
            results.append(result)
            log(f"bench catalog: {result}")
        return results
    finally:
        if own_root:
            shutil.rmtree(root, ignore_errors=True)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render(results: list[dict]) -> str:
    sizes = [r for r in results if "retained_snapshots" not in r]
    lines = ["| symbol-months | data files | snapshots | manifests (KB) | manifest list KB | metadata JSON KB "
             "| plan one symbol-day (s) | plan one symbol-month (s) | plan whole table (s) "
             "| commit: new 30-day month (s) | commit: republish 30-day month (s) | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['symbol_months']:,} | {r['data_files']:,} | {r['snapshots']:,} | {r['manifests']:,} "
              f"({r['manifest_bytes'] / 1e3:,.0f}) | {r['manifest_list_bytes'] / 1e3:,.0f} | "
              f"{r['metadata_json_bytes'] / 1e3:,.0f} | "
              f"{_seconds(r['plan_one_day_s'])} | {_seconds(r['plan_one_month_s'])} | "
              f"{_seconds(r['plan_whole_table_s'])} | {_seconds(r['commit_new_month_s'])} | "
              f"{_seconds(r['commit_republish_s'])} | {r['load_average']:.1f} |" for r in sizes]
    history = [r for r in results if "retained_snapshots" in r]
    if history:
        lines += ["", "| retained snapshots | symbol-months | snapshots | metadata JSON KB "
                      "| metadata/ JSON files (MB) | commit: new 30-day month (s) | commit: republish 30-day month (s) "
                      "| load avg |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['retained_snapshots']:,} | {r['symbol_months']:,} | {r['snapshots']:,} | "
                  f"{r['metadata_json_bytes'] / 1e3:,.0f} | {r['metadata_dir_files']} "
                  f"({r['metadata_dir_bytes'] / 1e6:,.1f}) | {_seconds(r['commit_new_month_s'])} | "
                  f"{_seconds(r['commit_republish_s'])} | {r['load_average']:.1f} |" for r in history]
    return "\n".join(lines) + "\n"


def _main(args) -> int:
    checkpoints = [int(c) for c in args.symbol_months.split(",")]
    properties = dict(p.split("=", 1) for p in args.table_property)
    load_before = os.getloadavg()
    retained = [int(c) for c in args.retained_snapshots.split(",") if c]
    results = run(checkpoints, table_properties=properties, retained_snapshots=retained)
    text = render(results) + growth(results)
    print(text)
    if args.output:
        from market_etl_devtools.bench_query import write_section

        settings = ", ".join(f"`{k}={v}`" for k, v in properties.items()) or "as `load_table` creates it"
        write_section(Path(args.output), "\n".join([
            BEGIN, "## Measured (`market-etl bench catalog`)", "",
            "Written by `market-etl bench catalog` (devtools/market_etl_devtools/bench_catalog.py; its docstring "
            f"says how; the rest of this file is kept). Table properties: {settings}. {os.cpu_count()} cores shared "
            f"with other work; load average (1, 5, 15 min) before {', '.join(f'{x:.1f}' for x in load_before)}, "
            f"after {', '.join(f'{x:.1f}' for x in os.getloadavg())}. Planning: best of 5. Commits (the publish "
            f"step's `replace_partition` of 30 freshly written day files): median of {REAL_COMMITS} new months and "
            f"of {REPUBLISHES} republishes at each size.", "", text + END, ""]), BEGIN, END)
    return 0


def growth(results: list[dict]) -> str:
    """How each time grows from the smallest to the largest table measured, and the whole-table plan's cost
    per data file (what grows linearly)."""
    sizes = [r for r in results if "retained_snapshots" not in r]
    if len(sizes) < 2:
        return ""
    first, last = sizes[0], sizes[-1]
    lines = [f"\nFrom {first['symbol_months']:,} to {last['symbol_months']:,} symbol-months "
             f"({last['symbol_months'] / first['symbol_months']:,.0f}x the table):"]
    for key, what in (("plan_one_day_s", "plan one symbol-day"), ("plan_one_month_s", "plan one symbol-month"),
                      ("plan_whole_table_s", "plan whole table"), ("commit_new_month_s", "commit a new month"),
                      ("commit_republish_s", "commit a republish")):
        if first.get(key) and last.get(key):
            lines.append(f"- {what}: {first[key]:.3f} s -> {last[key]:.3f} s ({last[key] / first[key]:,.1f}x)")
    lines.append(f"- the whole-table plan costs {1e6 * last['plan_whole_table_s'] / last['data_files']:,.0f} µs per "
                 f"data file at {last['symbol_months']:,} symbol-months, "
                 f"{1e3 * last['plan_whole_table_s'] / last['manifests']:,.1f} ms per manifest")
    history = [r for r in results if "retained_snapshots" in r]
    if history:
        r = history[-1]
        added = max(1, r["snapshots"] - last["snapshots"])
        per_snapshot = (r["commit_new_month_s"] - last["commit_new_month_s"]) / added
        lines.append(f"- with {r['snapshots']:,} snapshots retained a commit takes {r['commit_new_month_s']:.3f} s "
                     f"(new month), {r['commit_republish_s']:.3f} s (republish)"
                     + (f": {1e3 * per_snapshot:.1f} ms more per retained snapshot" if per_snapshot > 0 else ""))
    return "\n".join(lines) + "\n"


def register(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser("catalog", help="publish (commit) and query planning time on a trades table "
                                                   "growing to 3,000 symbol-months (generated metadata)")
    parser.add_argument("--symbol-months", default=",".join(str(c) for c in CHECKPOINTS),
                        help="comma-separated table sizes to measure at (default %(default)s)")
    parser.add_argument("--retained-snapshots", default=",".join(str(c) for c in RETAINED_SNAPSHOTS),
                        help="at the largest size, commit again with this many snapshots in the table's metadata "
                             "(comma-separated; default %(default)s)")
    parser.add_argument("--table-property", action="append", default=[], metavar="KEY=VALUE",
                        help="set on the table before it grows, to measure an alternative to load_table's properties")
    parser.add_argument("--output", default="benchmarks/catalog.md")
    parser.set_defaults(func=_main)
