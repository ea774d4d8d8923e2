"""The SQL engine as a Dagster resource: DuckDB over the local lake, Athena (plus the Glue catalog) on AWS.

Queries run through the Dagster-free readers of `market_etl.lake.query_engine` (what the `query` command
uses); this module adds what the pipeline needs on top: registering partitions, writing analytics.

- `query(BoundQuery)` runs Athena-dialect SQL and reports rows, seconds, files and bytes scanned.
- `register_trades_partition(partition)` makes a checked symbol-month queryable as market_data.trades_binance.
- `write_analytics(dataset, partition)` computes one analytics partition with SQL from the catalog and
  stores it as Parquet in the analytics zone, registered as market_data.<dataset>.
"""

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from market_etl.core.catalog import (
    CATALOG_DB_KEY,
    DATABASE,
    TRADES,
    TRADES_TABLE,
    CatalogError,
    CatalogFile,
    analytics_runs,
    analytics_table,
    register_glue_partitions,
    register_partition_files,
    registered_glue_locations,
    require_processed_files,
    sql_string,
)
from market_etl.core.keys import TradePartition, Zone, lake_key, new_run_id
from market_etl.core.metadata import ROW_COUNT, athena_query_url
from market_etl.core.sql import BoundQuery, QueryError, QueryResult, bind, get_query, partition_parameters
from market_etl.lake import Lake, LocalLake, open_lake
from market_etl.lake.query_engine import AthenaQueryEngine, DuckDBQueryEngine
from market_etl.settings import Settings

ANALYTICS_FILE = "part-00000.snappy.parquet"


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

    def query(self, query: BoundQuery) -> QueryResult:
        raise NotImplementedError

    def register_trades_partition(self, partition: TradePartition) -> dict[str, object]:
        """Register the partition's processed files; returns materialisation metadata."""
        raise NotImplementedError

    def write_analytics(self, dataset: str, partition: TradePartition) -> AnalyticsOutput:
        raise NotImplementedError

    def run_named(self, name: str, partition: TradePartition) -> QueryResult:
        """A named query over one symbol-month (analytics and check queries)."""
        return self.query(bind(get_query(name), partition_parameters(partition)))


class DuckDBSqlEngine(SqlEngine):
    """The local runtime: a DuckDB catalog file in the lake, Athena SQL translated by sqlglot."""

    def _lake(self) -> LocalLake:
        if self.lake_url.startswith("s3://"):
            raise CatalogError("the DuckDB engine needs a local lake (DuckDB cannot read s3:// here); "
                               "use MARKET_ETL_RUNTIME=aws for an S3 lake")
        return LocalLake(self.lake_url)

    @property
    def database_path(self) -> Path:
        return self._lake().path(CATALOG_DB_KEY)

    def _connect(self):
        return DuckDBQueryEngine(self.database_path).connect()

    def query(self, query: BoundQuery) -> QueryResult:
        return DuckDBQueryEngine(self.database_path).query(query)

    def register_trades_partition(self, partition: TradePartition) -> dict[str, object]:
        lake = self._lake()
        files = [CatalogFile(path=str(lake.path(o.key)), bytes=o.size, day=day)
                 for day, objects in require_processed_files(lake, partition).items() for o in objects]
        registration = register_partition_files(self.database_path, TRADES, partition, files)
        return {**registration.metadata(), "catalog": str(self.database_path)}

    def write_analytics(self, dataset: str, partition: TradePartition) -> AnalyticsOutput:
        """COPY the dataset's query result for the partition to Parquet, replacing that partition's files only."""
        table = analytics_table(dataset)
        lake = self._lake()
        directory = lake.path(lake_key(Zone.ANALYTICS, partition, dataset=dataset))
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / ANALYTICS_FILE
        # No .parquet suffix while in progress: DuckDB globs match hidden files too.
        temp = directory / f".inprogress-{uuid.uuid4().hex}"
        sql, parameters = bind(get_query(dataset), partition_parameters(partition)).for_duckdb()
        started = time.perf_counter()
        con = self._connect()
        try:
            (rows,) = con.execute(f"COPY ({sql}) TO {sql_string(str(temp))} (FORMAT parquet, COMPRESSION snappy)",
                                  parameters).fetchone()
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        finally:
            con.close()
        os.replace(temp, final)
        for stale in directory.glob("*.parquet"):
            if stale != final:
                stale.unlink()
        size = final.stat().st_size
        register_partition_files(self.database_path, table, partition,
                                 [CatalogFile(path=str(final), bytes=size)])
        return AnalyticsOutput(dataset=dataset, partition=partition, uri=str(final), rows=rows, bytes=size,
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

    def _reader(self) -> AthenaQueryEngine:
        return AthenaQueryEngine(work_group=self.work_group, s3_staging_dir=self.s3_staging_dir, region=self.region,
                                 endpoint_url=self.endpoint_url, database=self.database,
                                 poll_interval_seconds=self.poll_interval_seconds)

    def _executed(self, sql: str, parameters: list[str], label: str):
        return self._reader().executed(sql, parameters, label)

    def _glue(self):
        import boto3

        return boto3.client("glue", region_name=self.region, endpoint_url=self.endpoint_url)

    def _lake(self) -> Lake:
        return open_lake(self.lake_url, s3_endpoint_url=self.s3_endpoint_url, region=self.region)

    def query(self, query: BoundQuery) -> QueryResult:
        return self._reader().query(query)

    def register_trades_partition(self, partition: TradePartition) -> dict[str, object]:
        lake = self._lake()
        files = require_processed_files(lake, partition)
        locations = {day: lake.uri(lake_key(Zone.PROCESSED, partition, day=day)) + "/" for day in files}
        changes = register_glue_partitions(self._glue(), partition, locations, database=self.database, table=TRADES)
        return {"table": f"{self.database}.{TRADES_TABLE}", "days_registered": len(locations),
                "files_registered": sum(len(v) for v in files.values()),
                "bytes_registered": sum(o.size for v in files.values() for o in v), **changes.metadata()}

    def _unload(self, query: BoundQuery, target: str) -> str:
        """Run the UNLOAD of `query` into `target`; returns Athena's query execution id."""
        sql, parameters = query.for_athena()
        with self._executed(unload_statement(sql, target), parameters, f"UNLOAD of {query.label}") as cursor:
            return cursor.query_id

    def write_analytics(self, dataset: str, partition: TradePartition) -> AnalyticsOutput:
        """UNLOAD the dataset's query for the partition into a fresh run prefix, then switch the Glue
        partition of market_data.<dataset> to it, then delete the older runs.

        UNLOAD writes only into an empty location, and readers must never see a half-written or mixed
        version: so each materialisation writes its own `.../symbol=S/run-<id>/`, and the Glue partition's
        location is the one switch readers see (old version before it, new after). A failure before the
        switch deletes the new prefix and leaves the old version registered. A run older than this one is
        deleted after the switch; a newer one (a concurrent materialisation of the same partition) is left
        to its own run.
        """
        table = analytics_table(dataset)
        lake = self._lake()
        run = new_run_id()
        run_key = lake_key(Zone.ANALYTICS, partition, dataset=dataset, run=run)
        target = lake.uri(run_key) + "/"
        if not target.startswith("s3://"):
            raise CatalogError(f"Athena UNLOADs only to S3, but the lake is {lake.url}: "
                               "set MARKET_ETL_LAKE=s3://<bucket>/ for the aws runtime")
        glue = self._glue()
        started = time.perf_counter()
        try:
            query_id = self._unload(bind(get_query(dataset), partition_parameters(partition)), target)
            written = unloaded_files(lake, run_key + "/")
            if written.rows == 0:
                self._require_no_trades(glue, partition, dataset, target, query_id)
        except BaseException:
            lake.delete_prefix(run_key + "/")
            raise
        changes = register_glue_partitions(glue, partition, {None: target}, database=self.database, table=table)
        older = sorted(r for r in analytics_runs(lake, partition, dataset) if r < run)
        for old in older:
            lake.delete_prefix(lake_key(Zone.ANALYTICS, partition, dataset=dataset, run=old) + "/")
        return AnalyticsOutput(
            dataset=dataset, partition=partition, uri=target, rows=written.rows, bytes=written.bytes,
            seconds=time.perf_counter() - started,
            details={"files": written.files, "athena_query_id": query_id,
                     **({"athena_query_url": dg.MetadataValue.url(athena_query_url(self.region, query_id))}
                        if self.region else {}),
                     "table": f"{self.database}.{dataset}",
                     "glue_partition_created": changes.created == 1, "previous_versions_deleted": len(older)},
        )

    def _require_no_trades(self, glue, partition: TradePartition, dataset: str, target: str, query_id: str) -> None:
        """An empty result is right only when the partition has no trades registered; otherwise the
        UNLOAD lost its output (or wrote it elsewhere), and registering nothing would hide the data."""
        days = registered_glue_locations(glue, partition, self.database, TRADES)
        if days:
            raise CatalogError(
                f"Athena UNLOAD {query_id} of {dataset} for {partition} left no rows under {target}, but "
                f"{self.database}.{TRADES_TABLE} has {len(days)} day(s) of {partition} registered: look up the "
                f"query execution in workgroup {self.work_group!r} (state, output location) and materialise again")


def build_sql_engine(settings: Settings) -> SqlEngine:
    """The runtime's engine: chosen here, used by the Dagster resources and the `query` CLI alike."""
    if settings.runtime == "local":
        return DuckDBSqlEngine(lake_url=settings.lake)
    return AthenaSqlEngine(lake_url=settings.lake, region=settings.aws_region,
                           s3_endpoint_url=settings.s3_endpoint_url, work_group=settings.athena_workgroup)
