"""The SQL engine as a Dagster resource: DuckDB over the local lake, Athena (plus the Glue catalog) on AWS.

Queries run through the Dagster-free readers of `market_etl.lake.query_engine` (what the `query` command
uses); this module adds what the pipeline needs on top: registering partitions, writing analytics.

- `query(BoundQuery)` runs Athena-dialect SQL and reports rows, seconds, files and bytes scanned.
  `as_of` (a snapshot id or an ISO time) reads the tables as they were (DuckDB: views over that
  snapshot's files; Athena: `FOR VERSION AS OF` / `FOR TIMESTAMP AS OF`).
- `refresh_views()` after a commit: DuckDB rebuilds its views over the tables' current snapshots;
  Athena reads the Iceberg tables natively and needs nothing.
- `write_analytics(dataset, partition, catalog)` computes one analytics partition with SQL over the
  tables, writes it under a run-unique key and commits it to the Iceberg table market_data.<dataset>
  (replacing that symbol-month in one transaction).
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from market_etl.core.keys import TradePartition, Zone, lake_key, new_run_id
from market_etl.core.metadata import ROW_COUNT, athena_query_url
from market_etl.core.sql import BoundQuery, QueryResult, bind, get_query, partition_parameters
from market_etl.core.tables import ANALYTICS_TABLES, DATABASE, TableSpec
from market_etl.lake import Lake, LocalLake, open_lake
from market_etl.lake.duckdb_catalog import CATALOG_DB_KEY, refresh_views, sql_string
from market_etl.lake.iceberg import CatalogError, replace_partition
from market_etl.lake.query_engine import AthenaQueryEngine, DuckDBQueryEngine
from market_etl.settings import Settings



def analytics_table(dataset: str) -> TableSpec:
    if dataset not in ANALYTICS_TABLES:
        raise CatalogError(f"unknown analytics dataset {dataset!r}; known: {sorted(ANALYTICS_TABLES)}")
    return ANALYTICS_TABLES[dataset]


def analytics_file_key(dataset: str, partition: TradePartition, run: str) -> str:
    """analytics/<dataset>/year=Y/month=M/symbol=S/<run>-part-00000.snappy.parquet: unique to the run."""
    return f"{lake_key(Zone.ANALYTICS, partition, dataset=dataset)}/{run}-part-00000.snappy.parquet"


def with_partition_columns(query: BoundQuery) -> BoundQuery:
    """The analytics query plus its partition columns (year, month, symbol): the files carry them, so the
    Iceberg catalog takes each file's partition from its statistics."""
    sql = (f"SELECT q.*, CAST(:year AS INTEGER) AS year, CAST(:month AS INTEGER) AS month, "
           f"CAST(:symbol AS VARCHAR) AS symbol FROM (\n{query.sql}\n) q")
    return BoundQuery(sql=sql, values=query.values, name=query.name)


@dataclass(frozen=True)
class AnalyticsOutput:
    dataset: str
    partition: TradePartition
    uri: str
    rows: int
    bytes: int
    seconds: float
    details: dict[str, object] = field(default_factory=dict)  # engine-specific metadata (files, query id, ...)

    def metadata(self) -> dict[str, object]:
        return {ROW_COUNT: self.rows,
                "uri": self.uri, "rows": self.rows, "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "rows_per_second": round(self.rows / self.seconds) if self.seconds else None, **self.details}


class SqlEngine(dg.ConfigurableResource):
    """Runs the project's SQL and owns the catalog it runs against."""

    lake_url: str

    def query(self, query: BoundQuery, as_of: str | None = None) -> QueryResult:
        raise NotImplementedError

    def refresh_views(self, catalog) -> dict[str, object]:
        """Make readers see the tables' current snapshots (after a commit or a rollback)."""
        return {}

    def write_analytics(self, dataset: str, partition: TradePartition, catalog) -> AnalyticsOutput:
        raise NotImplementedError

    def run_named(self, name: str, partition: TradePartition) -> QueryResult:
        """A named query over one symbol-month (analytics and check queries)."""
        return self.query(bind(get_query(name), partition_parameters(partition)))


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

    def query(self, query: BoundQuery, as_of: str | None = None) -> QueryResult:
        return DuckDBQueryEngine(self.database_path, as_of=as_of).query(query)

    def refresh_views(self, catalog) -> dict[str, object]:
        return {"duckdb_views": str(refresh_views(catalog, self._lake()))}

    def write_analytics(self, dataset: str, partition: TradePartition, catalog) -> AnalyticsOutput:
        """COPY the dataset's query result for the partition to a run-unique Parquet file, then commit it
        to market_data.<dataset> replacing that symbol-month (one transaction), then refresh the views."""
        table = analytics_table(dataset)
        lake = self._lake()
        run = new_run_id()
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
        if rows == 0:  # no trades in the partition: commit the removal of what was there, add nothing
            target.unlink()
        commit = replace_partition(catalog, lake, table, partition, [key] if rows else [], {}, run_id=run)
        self.refresh_views(catalog)
        return AnalyticsOutput(dataset=dataset, partition=partition, uri=str(target), rows=rows,
                               bytes=target.stat().st_size, seconds=time.perf_counter() - started,
                               details={"run_id": run, **commit.metadata()})


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

    def _reader(self, as_of: str | None = None) -> AthenaQueryEngine:
        return AthenaQueryEngine(work_group=self.work_group, s3_staging_dir=self.s3_staging_dir, region=self.region,
                                 endpoint_url=self.endpoint_url, database=self.database,
                                 poll_interval_seconds=self.poll_interval_seconds, as_of=as_of)

    def _executed(self, sql: str, parameters: list[str], label: str):
        return self._reader().executed(sql, parameters, label)

    def _glue(self):
        import boto3

        return boto3.client("glue", region_name=self.region, endpoint_url=self.endpoint_url)

    def _lake(self) -> Lake:
        return open_lake(self.lake_url, s3_endpoint_url=self.s3_endpoint_url, region=self.region)

    def query(self, query: BoundQuery, as_of: str | None = None) -> QueryResult:
        return self._reader(as_of).query(query)

    def _unload(self, query: BoundQuery, target: str) -> str:
        """Run the UNLOAD of `query` into `target`; returns Athena's query execution id."""
        sql, parameters = query.for_athena()
        with self._executed(unload_statement(sql, target), parameters, f"UNLOAD of {query.label}") as cursor:
            return cursor.query_id

    def write_analytics(self, dataset: str, partition: TradePartition, catalog) -> AnalyticsOutput:
        """UNLOAD the dataset's query for the partition into a fresh run prefix, then commit the files it
        wrote to the Iceberg table market_data.<dataset>, replacing that symbol-month in one transaction.

        UNLOAD writes only into an empty location, so each materialisation writes its own
        `.../symbol=S/run-<id>/`; readers see the old version until the commit, the new one after. A
        failure before the commit deletes the new prefix. Older runs' files stay until maintenance
        deletes what no snapshot references (time travel keeps working meanwhile).
        """
        table = analytics_table(dataset)
        lake = self._lake()
        run = new_run_id()
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
            keys = [o.key for o in lake.list(run_key + "/")]
            commit = replace_partition(catalog, lake, table, partition, keys, {}, run_id=run)
        except BaseException:
            lake.delete_prefix(run_key + "/")
            raise
        return AnalyticsOutput(
            dataset=dataset, partition=partition, uri=target, rows=written.rows, bytes=written.bytes,
            seconds=time.perf_counter() - started,
            details={"files": written.files, "athena_query_id": query_id, "run_id": run,
                     **({"athena_query_url": dg.MetadataValue.url(athena_query_url(self.region, query_id))}
                        if self.region else {}),
                     **commit.metadata()},
        )


def build_sql_engine(settings: Settings) -> SqlEngine:
    """The runtime's engine: chosen here, used by the Dagster resources and the `query` CLI alike."""
    if settings.runtime == "local":
        return DuckDBSqlEngine(lake_url=settings.lake)
    return AthenaSqlEngine(lake_url=settings.lake, region=settings.aws_region,
                           s3_endpoint_url=settings.s3_endpoint_url, work_group=settings.athena_workgroup)
