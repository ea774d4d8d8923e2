"""The SQL engine as a Dagster resource: DuckDB over the local lake, Athena (plus the Glue catalog) on AWS.

Queries run through the Dagster-free readers of `market_etl.lake.query_engine` (what the `query` command
uses); this module adds what the pipeline needs on top: registering partitions, writing analytics.

- `query(BoundQuery)` runs Athena-dialect SQL and reports rows, seconds, files and bytes scanned.
  `as_of` (a snapshot id or an ISO time) reads the tables as they were (DuckDB: views over that
  snapshot's files; Athena: `FOR VERSION AS OF` / `FOR TIMESTAMP AS OF`).
- `refresh_views()` after a commit: DuckDB rebuilds its views over the tables' current snapshots;
  Athena reads the Iceberg tables natively and needs nothing.
- `build_analytics(dataset, partition, catalog, checks)` is write-audit-publish for one analytics
  partition: SQL over the published tables writes it under run-unique keys (`write_analytics_files`),
  one commit puts it on an audit branch of market_data.<dataset>, the checks read that snapshot, and
  only if every blocking check passed does main move to it. Nothing is redone when the partition's
  published trades and the dataset's SQL are what the published version was built from.
"""

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import dagster as dg

from market_etl.core.keys import TradePartition, Zone, lake_key, new_run_id
from market_etl.core.metadata import ROW_COUNT, athena_query_url
from market_etl.core.sql import (BoundQuery, CheckOutcome, QueryResult, bind, check_outcome, get_query,
                                 partition_parameters)
from market_etl.core.tables import ANALYTICS_TABLES, DATABASE, TRADES, TableSpec
from market_etl.lake import Lake, LocalLake, open_lake
from market_etl.lake.duckdb_catalog import CATALOG_DB_KEY, refresh_views, sql_string
from market_etl.lake.iceberg import (DAGSTER_RUN_ID, SUMMARY_PREFIX, AuditedVersion, CatalogError, Commit, RUN_ID, discard_audited,
                                     load_table, publish_audited, published_run, stage_partition)
from market_etl.lake.query_engine import AthenaQueryEngine, DuckDBQueryEngine
from market_etl.settings import Settings

# What an analytics version was built from, in its snapshot's summary: the published trades run of its
# partition and the version of the dataset's SQL. Both unchanged: the published version is up to date.
SOURCE_RUN = f"{SUMMARY_PREFIX}source-run-id"
TRANSFORM = f"{SUMMARY_PREFIX}transform-version"


def analytics_table(dataset: str) -> TableSpec:
    if dataset not in ANALYTICS_TABLES:
        raise CatalogError(f"unknown analytics dataset {dataset!r}; known: {sorted(ANALYTICS_TABLES)}")
    return ANALYTICS_TABLES[dataset]


def analytics_file_key(dataset: str, partition: TradePartition, run: str) -> str:
    """analytics/<dataset>/year=Y/month=M/symbol=S/<run>-part-00000.snappy.parquet: unique to the run."""
    return f"{lake_key(Zone.ANALYTICS, partition, dataset=dataset)}/{run}-part-00000.snappy.parquet"


def analytics_transform_version(dataset: str) -> str:
    """The dataset's SQL, as a digest: editing the query makes every published partition out of date."""
    return hashlib.sha256(get_query(dataset).sql.encode()).hexdigest()[:16]


def with_partition_columns(query: BoundQuery) -> BoundQuery:
    """The analytics query plus its partition columns (year, month, symbol): the files carry them, so the
    Iceberg catalog takes each file's partition from its statistics."""
    sql = (f"SELECT q.*, CAST(:year AS INTEGER) AS year, CAST(:month AS INTEGER) AS month, "
           f"CAST(:symbol AS VARCHAR) AS symbol FROM (\n{query.sql}\n) q")
    return BoundQuery(sql=sql, values=query.values, name=query.name)


@dataclass(frozen=True)
class AnalyticsFiles:
    """One analytics partition written under run-unique keys, not yet in any snapshot."""

    dataset: str
    partition: TradePartition
    run_id: str
    keys: tuple[str, ...]
    uri: str
    rows: int
    bytes: int
    seconds: float
    details: dict[str, object] = field(default_factory=dict)  # engine-specific metadata (files, query id, ...)


@dataclass(frozen=True)
class AnalyticsBuild:
    """The outcome of write-audit-publish for one analytics partition."""

    status: str  # published | up to date | not published (a blocking check failed)
    checks: dict[str, CheckOutcome]
    files: AnalyticsFiles | None = None  # None: up to date, nothing written
    audited: AuditedVersion | None = None
    commit: Commit | None = None
    reason: str = ""

    @property
    def failed_checks(self) -> list[str]:
        return [name for name, outcome in self.checks.items() if not outcome.passed]

    def metadata(self) -> dict[str, object]:
        meta: dict[str, object] = {"status": self.status}
        if self.reason:
            meta["skipped_because" if self.status == "up to date" else "reason"] = self.reason
        if self.files is not None:
            f = self.files
            meta |= {ROW_COUNT: f.rows, "uri": f.uri, "rows": f.rows, "bytes": f.bytes,
                     "seconds": round(f.seconds, 3), "rows_per_second": round(f.rows / f.seconds) if f.seconds else None,
                     "run_id": f.run_id, **f.details}
        if self.audited is not None:
            meta |= self.audited.metadata()
        if self.commit is not None:
            meta |= {**self.commit.metadata(), "snapshot_id": str(self.commit.snapshot_id)}
        return meta


class SqlEngine(dg.ConfigurableResource):
    """Runs the project's SQL and owns the catalog it runs against."""

    lake_url: str

    def query(self, query: BoundQuery, as_of: str | None = None,
              as_of_tables: tuple[str, ...] | None = None) -> QueryResult:
        """Run `query`; `as_of` reads the tables as they were (`as_of_tables`: only those travel)."""
        raise NotImplementedError

    def refresh_views(self, catalog, tables: Sequence[str] | None = None) -> dict[str, object]:
        """Make readers see the tables' (or `tables`') current snapshots (after a commit or a rollback)."""
        return {}

    def write_analytics_files(self, dataset: str, partition: TradePartition, run: str) -> AnalyticsFiles:
        """The dataset's query for `partition`, written as Parquet under keys unique to `run`; no commit."""
        raise NotImplementedError

    def _lake(self) -> Lake:
        raise NotImplementedError

    def run_named(self, name: str, partition: TradePartition, audited: AuditedVersion | None = None) -> QueryResult:
        """A named query over one symbol-month (analytics and check queries); with `audited`, its table is
        read at the audited snapshot (the other tables as published)."""
        query = bind(get_query(name), partition_parameters(partition))
        if audited is None or audited.snapshot_id is None:
            return self.query(query)
        return self.query(query, as_of=str(audited.snapshot_id), as_of_tables=(audited.spec.name,))

    def build_analytics(self, dataset: str, partition: TradePartition, catalog,
                        checks: Sequence[tuple[str, str, bool]], force: bool = False,
                        dagster_run_id: str | None = None) -> AnalyticsBuild:
        """Write-audit-publish for one analytics partition; `checks` are (check name, query name, blocking).

        Write: the query's result under run-unique keys, committed to the audit branch `audit-<run>`
        (main, what every reader reads, does not move). Audit: each check query reads that snapshot.
        Publish: only when every blocking check passed, main moves to it (`publish_audited`); otherwise
        the branch is dropped and the published version stays. Skipped ("up to date") when the published
        version was built from the partition's current trades with the current SQL, unless `force`.
        """
        table, lake = analytics_table(dataset), self._lake()
        trades = published_run(load_table(catalog, lake, TRADES), partition)
        built_from = {SOURCE_RUN: (trades or {}).get(RUN_ID, "none"), TRANSFORM: analytics_transform_version(dataset)}
        published = published_run(load_table(catalog, lake, table), partition)
        if not force and published is not None and all(published.get(k) == v for k, v in built_from.items()):
            return AnalyticsBuild(
                status="up to date", checks={},
                reason=(f"snapshot {published['snapshot_id']} was built from trades run {built_from[SOURCE_RUN]} "
                        f"with this SQL (version {built_from[TRANSFORM]}), and its checks passed then"))
        files = self.write_analytics_files(dataset, partition, new_run_id())
        properties = {**built_from, **({DAGSTER_RUN_ID: dagster_run_id} if dagster_run_id else {})}
        audited = stage_partition(catalog, lake, table, partition, files.keys, properties, run_id=files.run_id)
        outcomes = {name: check_outcome(self.run_named(query, partition, audited)) for name, query, _ in checks}
        failed = [name for name, query, blocking in checks if blocking and not outcomes[name].passed]
        if failed:
            discard_audited(catalog, lake, audited)
            return AnalyticsBuild(status="not published", checks=outcomes, files=files, audited=audited,
                                  reason=f"blocking checks failed: {', '.join(failed)}")
        commit = publish_audited(catalog, lake, audited)
        self.refresh_views(catalog, (table.name,))
        return AnalyticsBuild(status="published", checks=outcomes, files=files, audited=audited, commit=commit)


class DuckDBSqlEngine(SqlEngine):
    """The local runtime: DuckDB over views of the Iceberg tables' snapshots, Athena SQL translated by sqlglot."""

    def _lake(self) -> LocalLake:
        if self.lake_url.startswith("s3://"):
            raise CatalogError("the DuckDB engine needs a local lake (DuckDB cannot read s3:// here); "
                               "use MARKET_ETL_RUNTIME=aws for an S3 lake")
        return LocalLake(self.lake_url)

    @property
    def database_path(self) -> Path:
        return self._lake().path(CATALOG_DB_KEY)

    def _connect(self, as_of: str | None = None):
        return DuckDBQueryEngine(self.database_path, as_of=as_of).connect()

    def query(self, query: BoundQuery, as_of: str | None = None,
              as_of_tables: tuple[str, ...] | None = None) -> QueryResult:
        # A snapshot id travels only in the table that has it (duckdb_catalog.snapshots_as_of).
        return DuckDBQueryEngine(self.database_path, as_of=as_of).query(query)

    def refresh_views(self, catalog, tables: Sequence[str] | None = None) -> dict[str, object]:
        return {"duckdb_views": str(refresh_views(catalog, self._lake(), tables))}

    def write_analytics_files(self, dataset: str, partition: TradePartition, run: str) -> AnalyticsFiles:
        """COPY the dataset's query result for the partition to a Parquet file unique to `run` (none when
        the partition has no trades)."""
        analytics_table(dataset)
        lake = self._lake()
        key = analytics_file_key(dataset, partition, run)
        target = lake.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        sql, parameters = with_partition_columns(bind(get_query(dataset), partition_parameters(partition))).for_duckdb()
        started = time.perf_counter()
        con = self._connect()
        try:
            (rows,) = con.execute(f"COPY ({sql}) TO {sql_string(str(target))} (FORMAT parquet, COMPRESSION snappy)",
                                  parameters).fetchone()
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        finally:
            con.close()
        size = target.stat().st_size
        if rows == 0:  # no trades in the partition: the commit removes what was there and adds nothing
            target.unlink()
        return AnalyticsFiles(dataset=dataset, partition=partition, run_id=run, keys=(key,) if rows else (),
                              uri=str(target), rows=rows, bytes=size if rows else 0,
                              seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class UnloadedFiles:
    """What an UNLOAD left under its target prefix."""

    files: int
    bytes: int
    rows: int


def unload_statement(query_sql: str, target: str) -> str:
    """Athena's UNLOAD of a query to Parquet under `target` (an empty s3:// prefix).

    The query keeps its `?` execution parameters: Athena takes them in SELECT, INSERT INTO, CTAS and
    UNLOAD statements (in WHERE clauses, where the named queries have them), so partition values are
    still never pasted into SQL (docs/reliability.md case 25). The TO location cannot be a parameter; it is
    a quoted literal of the lake URL plus a key that lake_key builds from validated partition fields
    and a run id. Newlines around the query keep a trailing comment in it from eating the `)`.
    """
    return (f"UNLOAD (\n{query_sql}\n) TO {sql_string(target)} "
            "WITH (format = 'PARQUET', compression = 'SNAPPY')")


def unloaded_files(lake: Lake, prefix: str) -> UnloadedFiles:
    """Objects, bytes and rows under `prefix`; rows from each Parquet footer (lake.open_read is seekable:
    only the footer is fetched)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = size = rows = 0
    for obj in lake.list(prefix):
        try:
            with lake.open_read(obj.key) as handle:
                rows += pq.ParquetFile(handle).metadata.num_rows
        except pa.ArrowInvalid as err:
            raise CatalogError(f"{lake.uri(obj.key)} is not Parquet ({err}); only UNLOAD output belongs "
                               f"under {lake.uri(prefix)}") from err
        files, size = files + 1, size + obj.size
    return UnloadedFiles(files=files, bytes=size, rows=rows)


class AthenaSqlEngine(SqlEngine):
    """The aws runtime: Athena through pyathena for queries, Glue partitions for the catalog.

    `endpoint_url` points the Athena and Glue clients at an API endpoint other than AWS's (moto in tests);
    `s3_endpoint_url` does the same for the lake's S3.
    """

    work_group: str = "market-etl"  # terraform/athena.tf: the workgroup enforces the results location
    s3_staging_dir: str | None = None  # query results; may be omitted when the workgroup enforces its own
    region: str | None = None
    endpoint_url: str | None = None
    s3_endpoint_url: str | None = None
    database: str = DATABASE
    poll_interval_seconds: float = 1.0

    def _reader(self, as_of: str | None = None, as_of_tables: tuple[str, ...] | None = None) -> AthenaQueryEngine:
        return AthenaQueryEngine(work_group=self.work_group, s3_staging_dir=self.s3_staging_dir, region=self.region,
                                 endpoint_url=self.endpoint_url, database=self.database,
                                 poll_interval_seconds=self.poll_interval_seconds, as_of=as_of,
                                 as_of_tables=as_of_tables)

    def _executed(self, sql: str, parameters: list[str], label: str):
        return self._reader().executed(sql, parameters, label)

    def _glue(self):
        import boto3

        return boto3.client("glue", region_name=self.region, endpoint_url=self.endpoint_url)

    def _lake(self) -> Lake:
        return open_lake(self.lake_url, s3_endpoint_url=self.s3_endpoint_url, region=self.region)

    def query(self, query: BoundQuery, as_of: str | None = None,
              as_of_tables: tuple[str, ...] | None = None) -> QueryResult:
        return self._reader(as_of, as_of_tables).query(query)

    def _unload(self, query: BoundQuery, target: str) -> str:
        """Run the UNLOAD of `query` into `target`; returns Athena's query execution id."""
        sql, parameters = query.for_athena()
        with self._executed(unload_statement(sql, target), parameters, f"UNLOAD of {query.label}") as cursor:
            return cursor.query_id

    def write_analytics_files(self, dataset: str, partition: TradePartition, run: str) -> AnalyticsFiles:
        """UNLOAD the dataset's query for the partition into the fresh prefix `.../symbol=S/run-<run>/`.

        UNLOAD writes only into an empty location, so each run writes its own prefix; a failed UNLOAD
        deletes what it left. Nothing is committed here: until publish_audited moves main, readers see
        the old version; files no snapshot references are deleted by maintenance after its grace period.
        """
        analytics_table(dataset)
        lake = self._lake()
        run_key = lake_key(Zone.ANALYTICS, partition, dataset=dataset, run=run)
        target = lake.uri(run_key) + "/"
        if not target.startswith("s3://"):
            raise CatalogError(f"Athena UNLOADs only to S3, but the lake is {lake.url}: "
                               "set MARKET_ETL_LAKE=s3://<bucket>/ for the aws runtime")
        started = time.perf_counter()
        try:
            query_id = self._unload(with_partition_columns(bind(get_query(dataset), partition_parameters(partition))),
                                    target)
            written = unloaded_files(lake, run_key + "/")
            keys = tuple(o.key for o in lake.list(run_key + "/"))
        except BaseException:
            lake.delete_prefix(run_key + "/")
            raise
        return AnalyticsFiles(
            dataset=dataset, partition=partition, run_id=run, keys=keys, uri=target, rows=written.rows,
            bytes=written.bytes, seconds=time.perf_counter() - started,
            details={"files": written.files, "athena_query_id": query_id,
                     **({"athena_query_url": dg.MetadataValue.url(athena_query_url(self.region, query_id))}
                        if self.region else {})},
        )


def build_sql_engine(settings: Settings) -> SqlEngine:
    """The runtime's engine: chosen here, used by the Dagster resources and the `query` CLI alike."""
    if settings.runtime == "local":
        return DuckDBSqlEngine(lake_url=settings.lake)
    return AthenaSqlEngine(lake_url=settings.lake, region=settings.aws_region,
                           s3_endpoint_url=settings.s3_endpoint_url, work_group=settings.athena_workgroup)
