"""The lake's Apache Iceberg tables: built from `core.tables`, committed to, read, rolled back, maintained.

Catalogs (one per runtime, chosen by `open_catalog`):
- local: pyiceberg's SQL catalog on a SQLite file in the lake (`catalog/iceberg.db`); nothing to run.
- aws: the Glue Data Catalog through pyiceberg's Glue catalog; Athena (engine v3) reads the tables natively.

Write-audit-publish: data files are written under run-unique keys (`core.keys`) and described by a
staged manifest (`core.staged`); nothing is visible until `publish_staged` commits them. A commit
replaces exactly one symbol-month in one Iceberg transaction (delete that partition's files, add the
new ones: metadata only; pyiceberg reads each added file's footer for its statistics, never its rows).
Every snapshot a commit makes carries in its summary who made it (`market-etl.*` properties): the
Dagster run, the staged run id, the partition and the source archive's sha256.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

from market_etl.core.keys import TradePartition
from market_etl.core.staged import StagedVersion
from market_etl.core.tables import DATABASE, TRADES, TRADES_REJECTED, TableSpec
from market_etl.lake import Lake

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

log = logging.getLogger(__name__)

ICEBERG_CATALOG_KEY = "catalog/iceberg.db"
CATALOG_NAME = "market_etl"
SUMMARY_PREFIX = "market-etl."
RUN_ID = f"{SUMMARY_PREFIX}run-id"
DAGSTER_RUN_ID = f"{SUMMARY_PREFIX}dagster-run-id"
PARTITION = f"{SUMMARY_PREFIX}partition"
SOURCE_SHA256 = f"{SUMMARY_PREFIX}source-sha256"
MANIFEST = f"{SUMMARY_PREFIX}manifest"
ACTION = f"{SUMMARY_PREFIX}action"
COMMIT_ATTEMPTS = 8


class CatalogError(RuntimeError):
    """The catalog cannot do what was asked; the message says what to do."""


class PublishRefused(CatalogError):
    """A staged version that must not be published (failed blocking checks, or older than what is published)."""


class StaleVersion(PublishRefused):
    pass


# ---------------------------------------------------------------- declarations -> pyiceberg objects


def iceberg_type(athena_type: str, utc_timestamps: bool = False):
    from pyiceberg import types as T

    simple = {"bigint": T.LongType(), "int": T.IntegerType(), "boolean": T.BooleanType(), "string": T.StringType(),
              "double": T.DoubleType(), "date": T.DateType(),
              "timestamp": T.TimestamptzType() if utc_timestamps else T.TimestampType()}
    if athena_type in simple:
        return simple[athena_type]
    if athena_type.startswith("decimal("):
        precision, scale = (int(x) for x in athena_type[len("decimal("):-1].split(","))
        return T.DecimalType(precision, scale)
    raise CatalogError(f"no Iceberg type for {athena_type!r}")


def iceberg_schema(spec: TableSpec):
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    return Schema(*[NestedField(field_id=i, name=name, field_type=iceberg_type(t, spec.utc_timestamps), required=False)
                    for i, (name, t) in enumerate(spec.columns, start=1)])


def iceberg_partition_spec(spec: TableSpec, schema):
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    return PartitionSpec(*[PartitionField(source_id=schema.find_field(name).field_id, field_id=1000 + i,
                                          transform=IdentityTransform(), name=name)
                           for i, name in enumerate(spec.partition_fields)])


def partition_filter(spec: TableSpec, partition: TradePartition):
    """The rows of one symbol-month in `spec` (on identity partition fields: whole files, never a rewrite)."""
    from pyiceberg.expressions import And, EqualTo

    values = {"symbol": partition.symbol, "year": partition.year}
    types = dict(spec.columns)
    values["month"] = partition.month if types.get("month") == "string" else partition.month_number
    terms = [EqualTo(name, values[name]) for name in spec.partition_fields if name in values]
    return And(*terms) if len(terms) > 1 else terms[0]


def iceberg_uri(lake: Lake, key: str) -> str:
    """Where Iceberg metadata records a lake key: `file:///...` locally (pyiceberg's local FileIO), `s3://...`."""
    uri = lake.uri(key)
    return uri if "://" in uri else f"file://{uri}"


def identifier(spec: TableSpec) -> str:
    return f"{DATABASE}.{spec.name}"


# ---------------------------------------------------------------- catalogs


def open_catalog(lake: Lake, *, glue: bool = False, region: str | None = None,
                 glue_endpoint_url: str | None = None, s3_endpoint_url: str | None = None) -> "Catalog":
    """The runtime's Iceberg catalog: SQLite in the lake (local), or Glue (aws)."""
    if not glue:
        from pyiceberg.catalog.sql import SqlCatalog

        if lake.uri().startswith("s3://"):
            raise CatalogError("the SQL (SQLite) catalog needs a local lake; MARKET_ETL_RUNTIME=aws uses Glue")
        import fcntl

        path = lake.path(ICEBERG_CATALOG_KEY)  # type: ignore[attr-defined]
        path.parent.mkdir(parents=True, exist_ok=True)
        # The first SqlCatalog creates its SQLite tables; two processes doing it at once collide.
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return SqlCatalog(CATALOG_NAME, uri=f"sqlite:///{path}", warehouse=iceberg_uri(lake, ""))
    from pyiceberg.catalog.glue import GlueCatalog

    properties = {}
    if region:
        properties.update({"glue.region": region, "s3.region": region, "client.region": region})
    if glue_endpoint_url:
        properties["glue.endpoint"] = glue_endpoint_url
    if s3_endpoint_url:
        properties.update({"s3.endpoint": s3_endpoint_url, "s3.path-style-access": "true"})
    return GlueCatalog(CATALOG_NAME, **properties)


def table_properties(spec: TableSpec, schema) -> dict[str, str]:
    """The table properties the code declares (set at creation; brought up to date on load)."""
    return {"write.parquet.compression-codec": "snappy",
            # No retries inside pyiceberg: it would re-apply our delete + add on top of a
            # concurrent commit without our stale-version check; replace_partition retries instead.
            "commit.retry.num-retries": "0",
            # One manifest per commit, i.e. per symbol-month, never merged: a plan or a publish's
            # delete filtered on a partition then reads one small manifest (the others are
            # skipped by their partition ranges), however large the table. Merged manifests
            # mix symbols and months, so both read (and the delete rewrites) megabytes of
            # entries that grow with the table (benchmarks/catalog.md).
            "commit.manifest-merge.enabled": "false",
            # Every commit writes a new metadata JSON holding every retained snapshot: keep the
            # last 100 files, not one per commit forever (history, --as-of and rollback read the
            # snapshots in the current one).
            "write.metadata.delete-after-commit.enabled": "true",
            "write.metadata.previous-versions-max": "100",
            # Files arrive by add_files, named by the run that wrote them; readers map columns by name.
            "schema.name-mapping.default": schema.name_mapping.model_dump_json(),
            "comment": spec.description}


PROPERTIES_VERSION = f"{SUMMARY_PREFIX}properties-version"


def declared_properties(spec: TableSpec, schema) -> dict[str, str]:
    """`table_properties` plus a digest of them: a table whose digest differs was created or last updated by
    code that declared other properties. A property tuned by hand later keeps the digest, so it stays."""
    properties = table_properties(spec, schema)
    digest = hashlib.sha256(json.dumps(properties, sort_keys=True).encode()).hexdigest()[:16]
    return {**properties, PROPERTIES_VERSION: digest}


def load_table(catalog: "Catalog", lake: Lake, spec: TableSpec) -> "Table":
    """The table, created from its declaration on first use (a concurrent creator wins harmlessly); a table
    created or updated by code that declared other properties gets the ones declared now (one commit, once)."""
    from pyiceberg.exceptions import CommitFailedException, NoSuchTableError

    schema = iceberg_schema(spec)
    declared = declared_properties(spec, schema)
    failure: Exception | None = None
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            table = catalog.load_table(identifier(spec))
        except NoSuchTableError:
            pass
        else:
            if table.properties.get(PROPERTIES_VERSION) != declared[PROPERTIES_VERSION]:
                try:
                    with table.transaction() as tx:
                        tx.set_properties(declared)
                except CommitFailedException:  # a concurrent writer: whoever updates the properties next time
                    pass
                table.refresh()
            return table
        try:
            catalog.create_namespace_if_not_exists(DATABASE)
            return catalog.create_table(
                identifier(spec), schema=schema, partition_spec=iceberg_partition_spec(spec, schema),
                location=iceberg_uri(lake, spec.location_key), properties={"format-version": "2", **declared})
        except Exception as err:  # noqa: BLE001 - a concurrent creator of the namespace or the table (the SQL
            failure = err          # catalog raises its driver's errors): load what it made, or create again
            _retry_pause(attempt)
    raise CatalogError(f"{spec.qualified_name}: could not load or create the table ({failure})") from failure


# ---------------------------------------------------------------- what is published


def summary_properties(snapshot) -> dict[str, str]:
    summary = snapshot.summary
    if summary is None:
        return {}
    return {k: v for k, v in summary.additional_properties.items()} | {"operation": summary.operation.value}


def current_ancestors(table: "Table") -> Iterable:
    from pyiceberg.table.snapshots import ancestors_of

    return ancestors_of(table.current_snapshot(), table.metadata)


def published_run(table: "Table", partition: TradePartition) -> dict[str, str] | None:
    """The summary of the commit that published what the table holds now for `partition` (None: never)."""
    label = str(partition)
    for snapshot in current_ancestors(table):
        props = summary_properties(snapshot)
        if props.get(PARTITION) == label and props.get(ACTION) == "publish":
            return {**props, "snapshot_id": str(snapshot.snapshot_id)}
    return None


@dataclass(frozen=True)
class Commit:
    table: str
    snapshot_id: int | None
    files_added: int
    files_removed: int
    rows_added: int
    attempts: int
    already_published: bool = False
    properties: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, object]:
        return {"table": f"{DATABASE}.{self.table}", "snapshot_id": self.snapshot_id,
                "files_added": self.files_added, "files_removed": self.files_removed,
                "rows_added": self.rows_added, "commit_attempts": self.attempts,
                "already_published": self.already_published}


def _retry_pause(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))


def _committed(table: "Table", label: str, attempt_commit) -> int:
    """Run `attempt_commit(attempt)` (one transaction) until it lands; a concurrent commit makes it fail and
    it is retried on the refreshed table. Returns the attempt that landed."""
    from pyiceberg.exceptions import CommitFailedException

    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            attempt_commit(attempt)
        except CommitFailedException as err:
            if attempt == COMMIT_ATTEMPTS:
                raise CatalogError(f"{label}: commit failed {attempt} times on concurrent changes ({err}); "
                                   "materialise again") from err
            log.info("%s: concurrent commit, retrying (%s)", label, err)
            _retry_pause(attempt)
            table.refresh()
            continue
        table.refresh()
        return attempt
    raise AssertionError("unreachable")


def _already_published(table: "Table", spec: TableSpec, partition: TradePartition, run_id: str,
                       properties: dict[str, str], attempt: int) -> Commit | None:
    """The commit that already published run `run_id` for `partition` (None: it is not published yet).

    Raises StaleVersion when a newer run's version is published: a stale run never overwrites it.
    """
    published = published_run(table, partition)
    if published is None:
        return None
    if published.get(RUN_ID) == run_id:
        return Commit(spec.name, int(published["snapshot_id"]), 0, 0, 0, attempt, already_published=True,
                      properties=published)
    if published.get(RUN_ID, "") > run_id:
        raise StaleVersion(
            f"{spec.qualified_name} {partition}: run {run_id} (source sha256 "
            f"{properties.get(SOURCE_SHA256) or 'unknown'}) is older than the published run "
            f"{published.get(RUN_ID)} (source sha256 {published.get(SOURCE_SHA256) or 'unknown'}, snapshot "
            f"{published['snapshot_id']}): not published. Materialise it again to build a newer version.")
    return None


def replace_partition(catalog: "Catalog", lake: Lake, spec: TableSpec, partition: TradePartition,
                      file_keys: Sequence[str], properties: dict[str, str], *, run_id: str,
                      replace: bool = True) -> Commit:
    """One transaction: drop `partition`'s files from the table (when `replace`), add `file_keys`.

    Refused when the table already holds a newer run's version of the partition; a no-op when it holds
    this run's. A concurrent commit to the table (any partition) makes ours fail; it is retried on the
    refreshed table, stale check included, up to COMMIT_ATTEMPTS times.
    """
    table = load_table(catalog, lake, spec)
    uris = [iceberg_uri(lake, k) for k in file_keys]
    props = {**properties, RUN_ID: run_id, PARTITION: str(partition), ACTION: "publish"}
    before: list = [None]
    kept: list = [None]

    def attempt_commit(attempt: int) -> None:
        kept[0] = _already_published(table, spec, partition, run_id, properties, attempt) if replace else None
        if kept[0] is not None:
            return
        before[0] = table.current_snapshot()
        with table.transaction() as tx:
            _stage_replacement(tx, spec, partition, uris, props, replace=replace)

    attempts = _committed(table, f"{spec.qualified_name} {partition}", attempt_commit)
    return kept[0] or _commit_of(table, spec, before[0], attempts, props)


def _stage_replacement(tx, spec: TableSpec, partition: TradePartition, uris: Sequence[str], props: dict[str, str],
                       *, replace: bool = True, branch: str = "main") -> None:
    """Into transaction `tx`: the delete of `partition`'s files (when `replace`) and the add of `uris`, on `branch`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Delete operation did not match any records")
        if replace and tx.table_metadata.snapshot_by_name(branch) is not None:
            tx.delete(partition_filter(spec, partition), snapshot_properties=props, branch=branch)
        if uris:
            tx.add_files(list(uris), snapshot_properties=props, check_duplicate_files=False, branch=branch)


def _commit_of(table: "Table", spec: TableSpec, before, attempt: int, props: dict[str, str]) -> Commit:
    added = removed = rows = 0
    before_id = before.snapshot_id if before else None
    for snapshot in current_ancestors(table):
        if snapshot.snapshot_id == before_id:
            break
        summary = snapshot.summary
        added += int(summary["added-data-files"] or 0)
        removed += int(summary["deleted-data-files"] or 0)
        rows += int(summary["added-records"] or 0)
    current = table.current_snapshot()
    return Commit(spec.name, current.snapshot_id if current else None, added, removed, rows, attempt,
                  properties=props)


@dataclass(frozen=True)
class Publication:
    trades: Commit
    rejected: Commit | None

    def metadata(self) -> dict[str, object]:
        meta = {**self.trades.metadata(), "rejected_snapshot_id": self.rejected.snapshot_id if self.rejected else None}
        return meta


def version_properties(version: StagedVersion, manifest_key: str, dagster_run_id: str | None) -> dict[str, str]:
    props = {SOURCE_SHA256: version.source_sha256 or "", MANIFEST: manifest_key,
             DAGSTER_RUN_ID: dagster_run_id or version.dagster_run_id or ""}
    return {k: v for k, v in props.items() if v}


def read_manifest(lake: Lake, manifest_key: str) -> StagedVersion:
    raw = lake.get_bytes(manifest_key)
    if raw is None:
        raise CatalogError(f"no staged manifest at {lake.uri(manifest_key)}: materialise processed/trades first")
    return StagedVersion.from_json(raw)


def publish_staged(catalog: "Catalog", lake: Lake, manifest_key: str, dagster_run_id: str | None = None) -> Commit:
    """Commit the staged version at `manifest_key` to trades_binance, replacing its symbol-month.

    Refused (PublishRefused, naming the checks) when a blocking check failed; StaleVersion when a newer
    run's version is published already.
    """
    version = read_manifest(lake, manifest_key)
    if not version.publishable:
        raise PublishRefused(
            f"{TRADES.qualified_name} {version.partition}: run {version.run_id} is not published: blocking checks "
            f"failed: {', '.join(version.failed_blocking_checks)}. The published version is unchanged; see "
            f"{TRADES_REJECTED.qualified_name} (run = '{version.run_id}') and the checks of processed/trades.")
    return replace_partition(catalog, lake, TRADES, version.partition, [f.key for f in version.trades_files],
                             version_properties(version, manifest_key, dagster_run_id), run_id=version.run_id)


def record_quarantine(catalog: "Catalog", lake: Lake, manifest_key: str,
                      dagster_run_id: str | None = None) -> Commit | None:
    """Append a staged run's rejected lines to trades_rejected (every audited run's; column `run` says whose).

    The quarantine is the audit's record, so it is committed whether or not the checks passed: it is
    what shows why a version was not published. Idempotent per run.
    """
    version = read_manifest(lake, manifest_key)
    if not version.rejected_files:
        return None
    table = load_table(catalog, lake, TRADES_REJECTED)
    props = {**version_properties(version, manifest_key, dagster_run_id), RUN_ID: version.run_id,
             PARTITION: str(version.partition), ACTION: "quarantine"}
    uris = [iceberg_uri(lake, f.key) for f in version.rejected_files]
    before: list = [None]
    kept: list = [None]

    def attempt_commit(attempt: int) -> None:
        kept[0] = next((Commit(TRADES_REJECTED.name, snapshot.snapshot_id, 0, 0, 0, attempt, already_published=True)
                        for snapshot in current_ancestors(table)
                        if (p := summary_properties(snapshot)).get(ACTION) == "quarantine"
                        and p.get(RUN_ID) == version.run_id), None)
        if kept[0] is None:
            before[0] = table.current_snapshot()
            table.add_files(uris, snapshot_properties=props, check_duplicate_files=False)

    attempts = _committed(table, f"{TRADES_REJECTED.qualified_name} {version.partition}", attempt_commit)
    return kept[0] or _commit_of(table, TRADES_REJECTED, before[0], attempts, props)


# ---------------------------------------------------------------- audit branches


AUDIT_BRANCH_PREFIX = "audit-"
AUDITED_SNAPSHOT = f"{SUMMARY_PREFIX}audited-snapshot"


@dataclass(frozen=True)
class AuditedVersion:
    """A symbol-month's replacement committed to an audit branch forked from main: readable by its snapshot
    id (its checks read it so), invisible to every reader of the table (they read main)."""

    spec: TableSpec
    partition: TradePartition
    run_id: str
    branch: str
    snapshot_id: int | None  # None: nothing to commit (an empty table, and nothing to add)
    base_snapshot_id: int | None  # main's snapshot the branch forked from
    file_keys: tuple[str, ...]
    properties: dict[str, str]

    def metadata(self) -> dict[str, object]:
        return {"audit_branch": self.branch, "audited_snapshot_id": str(self.snapshot_id)}


def stage_partition(catalog: "Catalog", lake: Lake, spec: TableSpec, partition: TradePartition,
                    file_keys: Sequence[str], properties: dict[str, str], *, run_id: str) -> AuditedVersion:
    """Write-audit-publish's write for a table the pipeline computes: one commit creates the branch
    `audit-<run>` at main's snapshot and replaces `partition` by `file_keys` on it. Main does not move."""
    from pyiceberg.table.update.snapshot import ManageSnapshots

    table = load_table(catalog, lake, spec)
    branch = f"{AUDIT_BRANCH_PREFIX}{run_id}"
    props = {**properties, RUN_ID: run_id, PARTITION: str(partition), ACTION: "publish"}
    uris = [iceberg_uri(lake, k) for k in file_keys]
    base: list = [None]

    def attempt_commit(_attempt: int) -> None:
        base[0] = table.current_snapshot()
        if base[0] is None:
            # Iceberg forks branches only from a snapshot: an empty table first gets an empty one on main.
            with table.transaction() as tx, tx.update_snapshot(snapshot_properties={ACTION: "create"}).fast_append():
                pass
            table.refresh()
            base[0] = table.current_snapshot()
        with table.transaction() as tx:
            ManageSnapshots(tx).create_branch(base[0].snapshot_id, branch).commit()
            _stage_replacement(tx, spec, partition, uris, props, branch=branch)

    _committed(table, f"{spec.qualified_name} {partition} (audit branch {branch})", attempt_commit)
    head = table.snapshot_by_name(branch)
    return AuditedVersion(spec, partition, run_id, branch, head.snapshot_id if head else None,
                          base[0].snapshot_id if base[0] else None, tuple(file_keys), props)


def publish_audited(catalog: "Catalog", lake: Lake, audited: AuditedVersion) -> Commit:
    """Make an audited version what the table's readers see, and drop its branch.

    When main has not moved since the branch forked, main is fast-forwarded to the audited snapshot: the
    snapshot the checks read is the one published. Otherwise (another partition committed meanwhile) the
    same replacement is applied on main, recording the audited snapshot. A stale run is refused, as
    `replace_partition` refuses it.
    """
    from pyiceberg.table.update.snapshot import ManageSnapshots

    spec, partition = audited.spec, audited.partition
    table = load_table(catalog, lake, spec)
    uris = [iceberg_uri(lake, k) for k in audited.file_keys]
    before: list = [None]
    outcome: list = [None]

    def attempt_commit(attempt: int) -> None:
        outcome[0] = _already_published(table, spec, partition, audited.run_id, audited.properties, attempt)
        if outcome[0] is not None or audited.snapshot_id is None:
            return
        before[0] = table.current_snapshot()
        main_id = before[0].snapshot_id if before[0] else None
        with table.transaction() as tx:
            snapshots = ManageSnapshots(tx)
            if main_id == audited.base_snapshot_id:
                snapshots.set_current_snapshot(snapshot_id=audited.snapshot_id)
            else:
                _stage_replacement(tx, spec, partition, uris,
                                   {**audited.properties, AUDITED_SNAPSHOT: str(audited.snapshot_id)})
            if audited.branch in tx.table_metadata.refs:
                snapshots.remove_branch(audited.branch)
            snapshots.commit()

    attempts = _committed(table, f"{spec.qualified_name} {partition}", attempt_commit)
    if outcome[0] is not None:
        discard_audited(catalog, lake, audited)
        return outcome[0]
    return _commit_of(table, spec, before[0], attempts, audited.properties)


def discard_audited(catalog: "Catalog", lake: Lake, audited: AuditedVersion) -> None:
    """Drop the audit branch of a version that will not be published. Its snapshot stays in the table's
    history (staged, not published) until maintenance expires it; its files until maintenance collects them."""
    from pyiceberg.table.update.snapshot import ManageSnapshots

    table = load_table(catalog, lake, audited.spec)

    def attempt_commit(_attempt: int) -> None:
        if audited.branch in table.metadata.refs:
            with table.transaction() as tx:
                ManageSnapshots(tx).remove_branch(audited.branch).commit()

    _committed(table, f"{audited.spec.qualified_name} {audited.partition} (audit branch {audited.branch})",
               attempt_commit)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class DataFileRef:
    path: str  # as the catalog records it: file://... or s3://...
    rows: int
    bytes: int


def snapshot_files(table: "Table", snapshot_id: int | None = None, row_filter=None) -> list[DataFileRef]:
    """The data files a snapshot (default: the current one) consists of, from its manifests (no listing)."""
    from pyiceberg.expressions import AlwaysTrue

    if snapshot_id is None and table.current_snapshot() is None:
        return []
    scan = table.scan(snapshot_id=snapshot_id, row_filter=row_filter if row_filter is not None else AlwaysTrue())
    return sorted((DataFileRef(t.file.file_path, t.file.record_count, t.file.file_size_in_bytes)
                   for t in scan.plan_files()), key=lambda f: f.path)


def local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def snapshot_at(table: "Table", as_of: str) -> int:
    """A snapshot id from `--as-of`: a snapshot id, or an ISO time (the snapshot current at that time)."""
    if as_of.isdigit():
        snapshot_id = int(as_of)
        if table.snapshot_by_id(snapshot_id) is None:
            raise CatalogError(f"{table.name()}: no snapshot {snapshot_id} (market-etl table history lists them)")
        return snapshot_id
    try:
        when = dt.datetime.fromisoformat(as_of)
    except ValueError as err:
        raise CatalogError(f"--as-of {as_of!r}: expected a snapshot id or an ISO time, e.g. 2025-08-01T12:00:00Z") from err
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    millis = int(when.timestamp() * 1000)
    current = None
    for entry in table.metadata.snapshot_log:
        if entry.timestamp_ms <= millis:
            current = entry.snapshot_id
    if current is None:
        raise CatalogError(f"{table.name()}: no snapshot at or before {when.isoformat()}")
    return current


# ---------------------------------------------------------------- history and rollback


@dataclass(frozen=True)
class HistoryEntry:
    snapshot_id: int | None
    time: str
    operation: str
    status: str  # current | published (an ancestor of the current snapshot) | rolled back | staged-not-published
    run_id: str | None
    dagster_run_id: str | None
    partition: str | None
    rows_added: int
    rows_removed: int
    files_added: int
    files_removed: int
    source_sha256: str | None
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def history(table: "Table", partition: TradePartition | None = None) -> list[HistoryEntry]:
    """Every snapshot of the table, oldest first (filtered to one symbol-month when given)."""
    current = table.current_snapshot()
    ancestors = {s.snapshot_id for s in current_ancestors(table)}
    were_current = {entry.snapshot_id for entry in table.metadata.snapshot_log}
    # Audited snapshots applied to main as a new snapshot (main had moved on since the audit branch forked).
    applied_as = {int(audited): s.snapshot_id for s in current_ancestors(table)
                  if (audited := summary_properties(s).get(AUDITED_SNAPSHOT))}
    on_branch = {ref.snapshot_id: name for name, ref in table.metadata.refs.items() if name != "main"}
    entries = []
    for snapshot in sorted(table.snapshots(), key=lambda s: (s.timestamp_ms, s.sequence_number or 0)):
        props = summary_properties(snapshot)
        if partition is not None and props.get(PARTITION) != str(partition):
            continue
        summary = snapshot.summary
        sid, note = snapshot.snapshot_id, ""
        if current and sid == current.snapshot_id:
            status = "current"
        elif sid in ancestors:
            status = "published"
        elif sid in applied_as:
            status, note = "published", f"applied to main as snapshot {applied_as[sid]}"
        elif sid in on_branch:
            status, note = "staged-not-published", f"being audited on branch {on_branch[sid]}"
        elif sid in were_current:
            status = "rolled back"
        else:
            status, note = "staged-not-published", "its blocking checks failed, or its run stopped before publishing"
        entries.append(HistoryEntry(
            snapshot_id=snapshot.snapshot_id,
            time=dt.datetime.fromtimestamp(snapshot.timestamp_ms / 1000, dt.timezone.utc).isoformat(timespec="seconds"),
            operation=props.get("operation", ""), status=status, run_id=props.get(RUN_ID),
            dagster_run_id=props.get(DAGSTER_RUN_ID), partition=props.get(PARTITION),
            rows_added=int(summary["added-records"] or 0), rows_removed=int(summary["deleted-records"] or 0),
            files_added=int(summary["added-data-files"] or 0), files_removed=int(summary["deleted-data-files"] or 0),
            source_sha256=props.get(SOURCE_SHA256) or None, note=note,
        ))
    return entries


def rollback(table: "Table", snapshot_id: int) -> int:
    """Make `snapshot_id` (an ancestor of the current snapshot) current again; returns the previous current id."""
    current = table.current_snapshot()
    if current is None:
        raise CatalogError(f"{table.name()} has no snapshots")
    if table.snapshot_by_id(snapshot_id) is None:
        raise CatalogError(f"{table.name()}: no snapshot {snapshot_id} (market-etl table history lists them)")
    if snapshot_id not in {s.snapshot_id for s in current_ancestors(table)}:
        raise CatalogError(f"{table.name()}: snapshot {snapshot_id} is not an ancestor of the current snapshot "
                           f"{current.snapshot_id}; roll back only to a state the table had")
    table.manage_snapshots().rollback_to_snapshot(snapshot_id).commit()
    return current.snapshot_id


# ---------------------------------------------------------------- maintenance


@dataclass(frozen=True)
class MaintenanceReport:
    table: str
    snapshots_expired: int
    files_deleted: int
    bytes_deleted: int
    unreferenced_in_grace: int  # unreferenced, but younger than the grace period: kept for now
    audit_branches_removed: int = 0  # abandoned by runs that stopped between audit and publish

    def metadata(self) -> dict[str, object]:
        return dict(self.__dict__)


def referenced_files(table: "Table") -> set[str]:
    """Every data file any remaining snapshot lists (time travel and rollback need them all)."""
    return {f.path for s in table.snapshots() for f in snapshot_files(table, s.snapshot_id)}


def maintain(catalog: "Catalog", lake: Lake, spec: TableSpec, *, retention: dt.timedelta, grace: dt.timedelta,
             now: dt.datetime | None = None) -> MaintenanceReport:
    """Drop audit branches older than `grace`, expire snapshots older than `retention` (never the current
    one), then delete the data files under the table's directory that no remaining snapshot lists and
    that are older than `grace`.

    The grace period protects a run that wrote files and has not committed them yet, and a query still
    reading a snapshot that just expired. The table's metadata/ directory is left to the catalog.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    table = load_table(catalog, lake, spec)
    grace_cutoff = (now - grace).timestamp()
    # An audit branch outliving the grace period belongs to a run that stopped between audit and publish.
    abandoned = [name for name, ref in table.metadata.refs.items() if name.startswith(AUDIT_BRANCH_PREFIX)
                 and table.snapshot_by_id(ref.snapshot_id).timestamp_ms < grace_cutoff * 1000]
    if abandoned:
        from pyiceberg.table.update.snapshot import ManageSnapshots

        with table.transaction() as tx:
            snapshots = ManageSnapshots(tx)
            for name in abandoned:
                snapshots.remove_branch(name)
            snapshots.commit()
        table.refresh()
    current = table.current_snapshot()
    cutoff_ms = int((now - retention).timestamp() * 1000)
    expired = [s.snapshot_id for s in table.snapshots()
               if s.timestamp_ms < cutoff_ms and (current is None or s.snapshot_id != current.snapshot_id)]
    if expired:
        table.maintenance.expire_snapshots().by_ids(expired).commit()
        table.refresh()
    metadata_prefix = f"{spec.location_key}/metadata/"
    referenced = referenced_files(table)
    candidates, young = [], 0
    for obj in lake.list(spec.location_key + "/"):
        if obj.key.startswith(metadata_prefix) or iceberg_uri(lake, obj.key) in referenced:
            continue
        if obj.modified is None or obj.modified > grace_cutoff:
            young += 1
        else:
            candidates.append(obj)
    # A commit may have landed while we listed: read the snapshots again right before deleting.
    table.refresh()
    referenced = referenced_files(table)
    deleted = size = 0
    for obj in candidates:
        if iceberg_uri(lake, obj.key) not in referenced:
            lake.delete(obj.key)
            deleted, size = deleted + 1, size + obj.size
    return MaintenanceReport(spec.name, len(expired), deleted, size, young, len(abandoned))


def delete_expired_scratch(lake: Lake, grace: dt.timedelta, now: dt.datetime | None = None) -> tuple[int, int]:
    """Delete scratch output (temp zone) older than `grace`: what killed runs left (S3 also expires it by rule)."""
    from market_etl.core.keys import Zone, lake_key

    cutoff = ((now or dt.datetime.now(dt.timezone.utc)) - grace).timestamp()
    files = size = 0
    for obj in lake.list(lake_key(Zone.TEMP) + "/"):
        if obj.modified is not None and obj.modified < cutoff:
            lake.delete(obj.key)
            files, size = files + 1, size + obj.size
    return files, size
