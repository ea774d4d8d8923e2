"""Running read queries: DuckDB over the local catalog file, Athena on AWS. No Dagster, no Spark.

The `query` command, the notebook API and the Dagster SQL resources (`market_etl.resources.sql`) all
run their queries through these engines, so a command line that only reads never pays for importing
the orchestrator. Results come back whole (`query`) or stream into a file (`export`): DuckDB's COPY,
Athena's rows a page at a time, so an export never holds the whole result in memory.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence

from market_etl.core.tables import DATABASE, TABLES
from market_etl.lake.duckdb_catalog import CATALOG_DB_KEY, sql_string
from market_etl.lake.iceberg import CatalogError
from market_etl.core.sql import BoundQuery, QueryEngineFailed, QueryError, QueryResult, SqlRejected

#: --output FILE: the format follows the extension.
EXPORT_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet"}
#: DuckDB's memory for an export. COPY streams, except that keeping the order of rows a query did not order
#: buffers output without bound (and cannot spill), so exports drop that order: a query's ORDER BY still
#: holds. Past the limit DuckDB spills to a temporary directory instead of growing (a large sort does).
EXPORT_MEMORY_LIMIT = "256MB"


class CatalogNotFound(CatalogError):
    """Nothing is published yet: the lake has no catalog to query."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    rows: int
    seconds: float
    engine: str
    bytes: int


def export_format(path: str | os.PathLike) -> str:
    """csv, json or parquet, from the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise QueryError(f"cannot tell the format of {str(path)!r} from its extension: use one of "
                         f"{', '.join(EXPORT_FORMATS)}")
    return EXPORT_FORMATS[suffix]


@contextlib.contextmanager
def _replaced_atomically(path: Path) -> Iterator[Path]:
    """A hidden temporary file beside `path`, renamed onto it only when the writer finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.inprogress-{uuid.uuid4().hex}"
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _table_scans(node: dict):
    if node.get("type") == "TABLE_SCAN":
        yield node.get("extra_info", {})
    for child in node.get("children", []):
        yield from _table_scans(child)


def scan_statistics(profile: dict) -> tuple[int, int, int]:
    """(files read, files considered, bytes read) from DuckDB's JSON profile of one query."""
    read, considered = 0, 0
    for op in profile.get("operator", []):
        for info in _table_scans(op):
            files_read = int(info.get("Total Files Read", 0))
            read += files_read
            # "Scanning Files: 1/6" is present when filters pruned files; otherwise every file was read.
            considered += int(info["Scanning Files"].split("/")[1]) if "Scanning Files" in info else files_read
    return read, considered, int(profile.get("io", {}).get("total_bytes_read", 0))


def duckdb_error(label: str, sql: str, err: Exception) -> QueryError:
    """A DuckDB error as SqlRejected (the SQL is wrong) or QueryEngineFailed (the engine could not run it)."""
    import duckdb

    rejected = (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
                duckdb.SyntaxException, duckdb.PermissionException)
    kind = SqlRejected if isinstance(err, rejected) else QueryEngineFailed
    return kind(f"DuckDB could not run {label}: {err}\n(translated SQL: {sql})")


@dataclass(frozen=True)
class DuckDBQueryEngine:
    """The local runtime's reader: the lake's DuckDB catalog file, opened read-only."""

    database_path: Path
    as_of: str | None = None  # a snapshot id or an ISO time: views over the tables as they were (Iceberg)
    name = "duckdb"

    @classmethod
    def for_lake(cls, lake_url: str) -> "DuckDBQueryEngine":
        if lake_url.startswith("s3://"):
            raise CatalogError("the DuckDB engine needs a local lake (DuckDB cannot read s3:// here); "
                               "use MARKET_ETL_RUNTIME=aws for an S3 lake")
        return cls(Path(lake_url) / CATALOG_DB_KEY)

    def connect(self):
        """A read-only connection: queries never change the catalog, and never wait for a writer. With
        `as_of`: an in-memory database with views over the snapshots `snapshots_as_of` picks."""
        import duckdb

        if self.as_of is not None:
            from market_etl.lake import LocalLake
            from market_etl.lake.duckdb_catalog import create_views, snapshots_as_of, table_files
            from market_etl.lake.iceberg import open_catalog

            lake = LocalLake(self.database_path.parents[1])  # <lake>/catalog/market_etl.duckdb
            catalog = open_catalog(lake)
            chosen = snapshots_as_of(catalog, lake, self.as_of)
            con = duckdb.connect()
            if self.as_of.isdigit() and self.database_path.is_file():
                # A snapshot id travels in its own table only: the others read as published, from the views
                # file, instead of listing every file of each (a large trades table takes seconds).
                con.execute(f"ATTACH {sql_string(str(self.database_path))} AS published (READ_ONLY)")
                con.execute(f"CREATE SCHEMA {DATABASE}")
                for name in TABLES:
                    if name not in chosen:
                        con.execute(f"CREATE VIEW {DATABASE}.{name} AS SELECT * FROM published.{DATABASE}.{name}")
                create_views(con, table_files(catalog, lake, chosen, tables=tuple(chosen)), only_given=True)
            else:
                create_views(con, table_files(catalog, lake, chosen))
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET late_materialization_max_rows = 0")
            return con
        if not self.database_path.is_file():
            raise CatalogNotFound(
                f"no catalog at {self.database_path}: materialise market_data/trades_binance first (e.g. `make demo`)")
        con = duckdb.connect(str(self.database_path), read_only=True)
        con.execute("SET TimeZone = 'UTC'")
        # Top-N "late materialisation" scans a table twice; off, every table reference is one scan, so the
        # reported files-scanned count means what it says (no measurable cost at these row widths).
        con.execute("SET late_materialization_max_rows = 0")
        return con

    def query(self, query: BoundQuery) -> QueryResult:
        import duckdb

        sql, parameters = query.for_duckdb()
        con = self.connect()
        try:
            con.execute("PRAGMA enable_profiling = 'no_output'")
            started = time.perf_counter()
            cursor = con.execute(sql, parameters)
            rows = cursor.fetchall()
            seconds = time.perf_counter() - started
            columns = [d[0] for d in cursor.description]
            files, files_total, scanned = scan_statistics(json.loads(con.get_profiling_information(format="json")))
        except duckdb.Error as err:
            raise duckdb_error(query.label, sql, err) from err
        finally:
            con.close()
        return QueryResult(columns=columns, rows=rows, seconds=seconds, engine=self.name, files_scanned=files,
                           files_total=files_total, bytes_scanned=scanned)

    def export(self, query: BoundQuery, path: str | os.PathLike) -> ExportResult:
        """COPY the result to `path` (csv, json array or Parquet by extension); DuckDB streams it."""
        import duckdb

        path, fmt = Path(path), export_format(path)
        options = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json, ARRAY true",
                   "parquet": "FORMAT parquet, COMPRESSION zstd"}[fmt]
        sql, parameters = query.for_duckdb()
        con = self.connect()
        started = time.perf_counter()
        try:
            con.execute(f"SET memory_limit = {sql_string(EXPORT_MEMORY_LIMIT)}")
            con.execute("SET preserve_insertion_order = false")
            con.execute(f"SET temp_directory = {sql_string(str(Path(tempfile.gettempdir()) / 'market-etl-spill'))}")
            with _replaced_atomically(path) as temp:
                (rows,) = con.execute(f"COPY ({sql}) TO {sql_string(str(temp))} ({options})", parameters).fetchone()
        except duckdb.Error as err:
            raise duckdb_error(query.label, sql, err) from err
        finally:
            con.close()
        return ExportResult(path=path, format=fmt, rows=rows, seconds=time.perf_counter() - started,
                            engine=self.name, bytes=path.stat().st_size)


# ---------------------------------------------------------------- Athena

# Athena's failure reasons that mean the SQL itself is wrong (the rest are the service failing).
ATHENA_SQL_ERRORS = ("SYNTAX_ERROR", "TABLE_NOT_FOUND", "COLUMN_NOT_FOUND", "SCHEMA_NOT_FOUND",
                     "FUNCTION_NOT_FOUND", "TYPE_MISMATCH", "INVALID_FUNCTION_ARGUMENT")


def athena_arrow_type(type_code: str, precision: int | None, scale: int | None):
    """The Arrow type of an Athena result column (its ResultSetMetadata type); text for anything else."""
    import pyarrow as pa

    simple = {"boolean": pa.bool_(), "tinyint": pa.int8(), "smallint": pa.int16(), "integer": pa.int32(),
              "bigint": pa.int64(), "float": pa.float32(), "real": pa.float32(), "double": pa.float64(),
              "date": pa.date32(), "timestamp": pa.timestamp("ms"), "varbinary": pa.binary()}
    if type_code == "decimal" and precision:
        return pa.decimal128(precision, scale or 0)
    return simple.get(type_code, pa.string())


def json_value(value: Any) -> Any:
    """Exact decimals as strings (JSON numbers would round them), times in ISO 8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def write_rows(path: Path, fmt: str, columns: list[str], arrow_types: list, pages: Iterable[list[tuple]]) -> int:
    """Write pages of rows to `path` as they come (csv, json array, Parquet); returns the row count."""
    rows = 0
    with open(path, "w" if fmt != "parquet" else "wb", **({"newline": ""} if fmt == "csv" else {})) as out:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.schema(list(zip(columns, arrow_types)))
            with pq.ParquetWriter(out, schema, compression="zstd") as writer:
                for page in pages:
                    writer.write_table(pa.Table.from_pylist([dict(zip(columns, r)) for r in page], schema=schema))
                    rows += len(page)
        elif fmt == "csv":
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(columns)
            for page in pages:
                writer.writerows([[json_value(v) for v in row] for row in page])
                rows += len(page)
        else:
            out.write("[")
            for page in pages:
                for row in page:
                    record = {c: json_value(v) for c, v in zip(columns, row)}
                    out.write(("," if rows else "") + "\n" + json.dumps(record))
                    rows += 1
            out.write("\n]\n")
    return rows


@dataclass(frozen=True)
class AthenaQueryEngine:
    """The aws runtime's reader: Athena through pyathena, in the project's workgroup.

    `endpoint_url` points the Athena client at an API endpoint other than AWS's (moto in tests); without
    it botocore's own AWS_ENDPOINT_URL_ATHENA / AWS_ENDPOINT_URL apply.
    """

    work_group: str = "market-etl"  # terraform/athena.tf: the workgroup enforces the results location
    s3_staging_dir: str | None = None  # query results; may be omitted when the workgroup enforces its own
    region: str | None = None
    endpoint_url: str | None = None
    database: str = DATABASE
    poll_interval_seconds: float = 1.0
    page_rows: int = 10_000
    as_of: str | None = None  # a snapshot id or an ISO time: FOR VERSION AS OF / FOR TIMESTAMP AS OF
    as_of_tables: tuple[str, ...] | None = None  # only these tables travel (a snapshot id is one table's); None: all
    name = "athena"

    @contextlib.contextmanager
    def executed(self, sql: str, parameters: list[str], label: str) -> Iterator:
        """A pyathena cursor whose statement has run to completion in the workgroup; errors as QueryError."""
        from pyathena import connect
        from pyathena.error import Error as AthenaError

        connection = connect(work_group=self.work_group, s3_staging_dir=self.s3_staging_dir,
                             region_name=self.region, endpoint_url=self.endpoint_url, schema_name=self.database,
                             poll_interval=self.poll_interval_seconds)
        try:
            cursor = connection.cursor()
            cursor.execute(sql, parameters or None, paramstyle="qmark")
            yield cursor
        except AthenaError as err:
            kind = SqlRejected if any(code in str(err) for code in ATHENA_SQL_ERRORS) else QueryEngineFailed
            raise kind(f"Athena could not run {label}: {err}") from err
        finally:
            connection.close()

    def _sql(self, query: BoundQuery) -> tuple[str, list[str]]:
        sql, parameters = query.for_athena()
        return (sql if self.as_of is None else time_travel_sql(sql, self.as_of, self.as_of_tables)), parameters

    def query(self, query: BoundQuery) -> QueryResult:
        sql, parameters = self._sql(query)
        started = time.perf_counter()
        with self.executed(sql, parameters, query.label) as cursor:
            rows = [tuple(row) for row in cursor.fetchall()]
            seconds = time.perf_counter() - started
            columns = [d[0] for d in cursor.description or []]
            scanned = cursor.data_scanned_in_bytes
        return QueryResult(columns=columns, rows=rows, seconds=seconds, engine=self.name, bytes_scanned=scanned)

    def export(self, query: BoundQuery, path: str | os.PathLike) -> ExportResult:
        """The result a page at a time (pyathena fetches pages of GetQueryResults) into `path`."""
        path, fmt = Path(path), export_format(path)
        sql, parameters = self._sql(query)
        started = time.perf_counter()
        with self.executed(sql, parameters, query.label) as cursor, _replaced_atomically(path) as temp:
            description = cursor.description or []
            columns = [d[0] for d in description]
            types = [athena_arrow_type(d[1], d[4], d[5]) for d in description]
            pages = iter(lambda: [tuple(r) for r in cursor.fetchmany(self.page_rows)], [])
            rows = write_rows(temp, fmt, columns, types, pages)
        return ExportResult(path=path, format=fmt, rows=rows, seconds=time.perf_counter() - started,
                            engine=self.name, bytes=path.stat().st_size)


TABLE_REFERENCE = re.compile(rf"\b{DATABASE}\.([a-z_][a-z0-9_]*)\b", re.IGNORECASE)


def time_travel_sql(sql: str, as_of: str, tables: Sequence[str] | None = None) -> str:
    """Athena SQL reading the market_data tables (`tables`, or every one) as of a snapshot id or a time
    (Iceberg time travel)."""
    if as_of.isdigit():
        clause = f"FOR VERSION AS OF {int(as_of)}"
    else:
        try:
            when = dt.datetime.fromisoformat(as_of)
        except ValueError as err:
            raise QueryError(f"--as-of {as_of!r}: expected a snapshot id or an ISO time") from err
        when = (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)
        clause = f"FOR TIMESTAMP AS OF TIMESTAMP '{when:%Y-%m-%d %H:%M:%S.%f} UTC'"
    wanted = None if tables is None else {t.lower() for t in tables}
    return TABLE_REFERENCE.sub(
        lambda m: m.group(0) if wanted is not None and m.group(1).lower() not in wanted else f"{m.group(0)} {clause}",
        sql)


def build_query_engine(settings, as_of: str | None = None) -> DuckDBQueryEngine | AthenaQueryEngine:
    """The runtime's reader, from `market_etl.settings.Settings`; `as_of` reads the tables' past."""
    if settings.runtime == "local":
        return DuckDBQueryEngine(DuckDBQueryEngine.for_lake(settings.lake).database_path, as_of=as_of)
    return AthenaQueryEngine(region=settings.aws_region, as_of=as_of)
