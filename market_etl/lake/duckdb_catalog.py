"""The local runtime's reader: a DuckDB file of views over each Iceberg table's current snapshot.

DuckDB cannot load its iceberg extension here (extensions download from DuckDB's own host), so the
readers get the snapshot's file list from pyiceberg instead: one view per table over exactly the data
files of the table's current snapshot (`read_parquet([...])`), rebuilt after every commit and
rollback. Nothing lists a directory: a file written by a run whose checks then failed is in no
snapshot, so in no view. The file (`catalog/market_etl.duckdb`) is what `market-etl query`, the
analytics SQL and anyone opening `duckdb` on it read.

Writers take an exclusive lock, build the new database in a hidden temporary copy and rename it into
place: readers (read-only connections) are never blocked and see the old or the new views, whole.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from market_etl.core.keys import Zone, lake_key
from market_etl.core.tables import DATABASE, TABLES, TableSpec

# Not "market_data.duckdb": DuckDB names the attached database after the file, and a database named like
# the schema makes `market_data.trades_binance` ambiguous.
CATALOG_DB_KEY = lake_key(Zone.CATALOG, dataset="market_etl") + ".duckdb"
TEMP_PREFIX = ".inprogress-"  # as the lake's own temporary files: hidden from listings

_DUCKDB_TYPES = {"bigint": "BIGINT", "boolean": "BOOLEAN", "timestamp": "TIMESTAMP", "int": "INTEGER",
                 "string": "VARCHAR", "double": "DOUBLE", "date": "DATE"}


def duckdb_type(athena_type: str) -> str:
    return _DUCKDB_TYPES.get(athena_type, athena_type.upper())


def sql_string(value: str) -> str:
    """A SQL string literal (for paths in DuckDB DDL, where parameters are not allowed)."""
    return "'" + value.replace("'", "''") + "'"


def _select_list(spec: TableSpec) -> str:
    # Typed as Athena types them: a UTC instant reads as a UTC wall-clock TIMESTAMP, whatever the session zone.
    return ", ".join(f"timezone('UTC', {name}) AS {name}" if spec.utc_timestamps and t == "timestamp" else name
                     for name, t in spec.columns)


def _hive_types(spec: TableSpec) -> str:
    """The partition columns spelled in the file paths (`key=value` directories), typed for DuckDB."""
    return "{" + ", ".join(f"'{n}': {duckdb_type(t)}" for n, t in spec.partition_columns
                           if n in spec.partition_fields) + "}"


def view_sql(spec: TableSpec, paths: Sequence[str]) -> str:
    """The view of `spec` over exactly `paths`; a typed empty view when the snapshot has no files.

    hive_partitioning lets DuckDB skip files by the partition directories in their paths (the values
    equal the columns inside the files), so a filter on the partition keys reads only those files.
    """
    view = f"{DATABASE}.{spec.name}"
    if not paths:
        # Typed as the files are (UTC instants: TIMESTAMP WITH TIME ZONE), then through the same select list.
        empty = ", ".join(f"CAST(NULL AS {'TIMESTAMP WITH TIME ZONE' if spec.utc_timestamps and t == 'timestamp' else duckdb_type(t)}) AS {n}"
                          for n, t in spec.columns)
        body = f"SELECT {empty} WHERE false"
        if spec.utc_timestamps:
            body = f"SELECT {_select_list(spec)} FROM ({body})"
        return f"CREATE OR REPLACE VIEW {view} AS {body}"
    files = "[" + ", ".join(sql_string(p) for p in paths) + "]"
    return (f"CREATE OR REPLACE VIEW {view} AS SELECT {_select_list(spec)} FROM read_parquet({files}, "
            f"hive_partitioning = true, hive_types = {_hive_types(spec)})")


def create_views(con, files_by_table: Mapping[str, Sequence[str]], only_given: bool = False) -> None:
    """Views for every declared table in `con` (tables missing from `files_by_table` are empty), or with
    `only_given` for the tables in `files_by_table` alone (the others' views are left as they are)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {DATABASE}")
    for name, spec in TABLES.items():
        if only_given and name not in files_by_table:
            continue
        con.execute(view_sql(spec, files_by_table.get(name, ())))


@contextlib.contextmanager
def catalog_writer(db_path: Path) -> Iterator["object"]:
    """A read-write connection to a private copy of the views file, renamed over the original on success.

    An exclusive lock (flock on `<db>.lock`) serialises writers across processes; readers keep reading
    the file they opened.
    """
    import duckdb

    db_path.parent.mkdir(parents=True, exist_ok=True)
    with open(db_path.with_name(db_path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        temp = db_path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}-{db_path.name}")
        try:
            if db_path.exists():
                shutil.copyfile(db_path, temp)
            con = duckdb.connect(str(temp))
            try:
                yield con
            finally:
                con.close()
            os.replace(temp, db_path)
        finally:
            temp.unlink(missing_ok=True)
            temp.with_name(temp.name + ".wal").unlink(missing_ok=True)


def table_files(catalog, lake, snapshots: Mapping[str, int] | None = None,
                tables: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Local paths of each table's (or of `tables`') data files: its current snapshot, or the snapshot given by
    name (-1: none)."""
    from market_etl.lake.iceberg import load_table, local_path, snapshot_files

    files = {}
    for name, spec in TABLES.items():
        if tables is not None and name not in tables:
            continue
        table = load_table(catalog, lake, spec)
        snapshot_id = (snapshots or {}).get(name)
        files[name] = [] if snapshot_id == -1 else [local_path(f.path) for f in snapshot_files(table, snapshot_id)]
    return files


def refresh_views(catalog, lake, tables: Sequence[str] | None = None) -> Path:
    """Rebuild the views file from the tables' current snapshots (after a commit or a rollback); with
    `tables`, only those tables' views (listing a large table's files is the cost: benchmarks/catalog.md).

    The snapshots are read under the writers' lock, so of two commits racing, the later rebuild sees both.
    """
    db_path = lake.path(CATALOG_DB_KEY)
    with catalog_writer(db_path) as con:
        fresh = tables is None or not db_path.exists()
        create_views(con, table_files(catalog, lake, tables=None if fresh else tables), only_given=not fresh)
    return db_path


def snapshots_as_of(catalog, lake, as_of: str) -> dict[str, int]:
    """Which snapshot of each table `--as-of` means: a snapshot id picks it in the table that has it (the
    others stay current, as Athena's FOR VERSION AS OF on that table); a time picks, in every table, the
    snapshot current then (-1: the table had none then, it reads empty)."""
    from market_etl.lake.iceberg import CatalogError, load_table, snapshot_at

    chosen = {}
    for name, spec in TABLES.items():
        table = load_table(catalog, lake, spec)
        if as_of.isdigit():
            if table.snapshot_by_id(int(as_of)) is not None:
                chosen[name] = int(as_of)
        else:
            try:
                chosen[name] = snapshot_at(table, as_of)
            except CatalogError:
                chosen[name] = -1
    if as_of.isdigit() and not chosen:
        raise CatalogError(f"no table has snapshot {as_of} (market-etl table history TABLE lists them)")
    return chosen
