"""Analytics on the aws runtime: an Athena UNLOAD into a fresh run prefix, registered as the Glue partition
of market_data.<dataset>, older runs deleted; the declared analytics columns are what the queries return.

moto's Athena records a query (text, execution parameters, workgroup) but never runs SQL, so it writes
no UNLOAD output. `AthenaWritingParquet` below is a TEST-ONLY stand-in for that one side effect: after the
real StartQueryExecution against moto, it reads the UNLOAD's TO location back from the query text moto
recorded and puts real Parquet files there, as Athena would. Everything else (S3, Glue, the engine's
listing, footer reads, Glue switch and deletes) runs against moto's real APIs on loopback.
"""
from __future__ import annotations

import io
import re

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market_etl.core.catalog import (
    ANALYTICS_TABLES,
    DATABASE,
    TRADES,
    CatalogError,
    analytics_runs,
    glue_columns,
    register_glue_partitions,
)
from market_etl.core.keys import TradePartition, Zone, lake_key
from market_etl.core.sql import BoundQuery, bind, get_query, partition_parameters
from market_etl.resources.sql import AthenaSqlEngine, unload_statement

REGION = "us-east-1"
WORKGROUP = "market-etl"
BTC, ETH = TradePartition("BTCUSDT", "2025-07"), TradePartition("ETHUSDT", "2025-07")
UNLOAD_TARGET = re.compile(r"\n\) TO '(s3://[^']+)' WITH \(format = 'PARQUET', compression = 'SNAPPY'\)")
ARROW_TYPES = {"timestamp": pa.timestamp("ms"), "date": pa.date32(), "bigint": pa.int64(), "double": pa.float64()}


def _arrow_type(athena_type: str) -> pa.DataType:
    decimal = re.fullmatch(r"decimal\((\d+),(\d+)\)", athena_type)
    return pa.decimal128(int(decimal[1]), int(decimal[2])) if decimal else ARROW_TYPES[athena_type]


def parquet_bytes(dataset: str, rows: int) -> bytes:
    """A real Parquet file with the dataset's declared columns and `rows` rows (deterministic bytes)."""
    columns = ANALYTICS_TABLES[dataset].columns
    table = pa.table({name: pa.nulls(rows, _arrow_type(type_)) for name, type_ in columns})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()


class AthenaWritingParquet(AthenaSqlEngine):
    """TEST ONLY: sends the UNLOAD to moto's Athena, then writes one Parquet file per entry of
    `rows_per_file` at the location taken from the query text moto recorded (moto writes nothing)."""

    rows_per_file: list[int]

    def _unload(self, query: BoundQuery, target: str) -> str:
        query_id = super()._unload(query, target)
        athena = boto3.client("athena", endpoint_url=self.endpoint_url, region_name=REGION)
        recorded = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Query"]
        bucket, prefix = UNLOAD_TARGET.search(recorded)[1].removeprefix("s3://").split("/", 1)
        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint_url, region_name=REGION)
        for number, rows in enumerate(self.rows_per_file):
            s3.put_object(Bucket=bucket, Key=f"{prefix}{query_id}_{number:05d}",
                          Body=parquet_bytes(query.name, rows))
        return query_id


@pytest.fixture
def catalog(moto_endpoint):
    """market_data with trades_binance and the analytics tables declared from the code (as terraform does),
    fresh for each test, and the project workgroup."""
    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name=REGION)
    try:
        glue.create_database(DatabaseInput={"Name": DATABASE})
    except glue.exceptions.AlreadyExistsException:
        pass
    for table in (TRADES, *ANALYTICS_TABLES.values()):
        try:
            glue.delete_table(DatabaseName=DATABASE, Name=table.name)
        except glue.exceptions.EntityNotFoundException:
            pass
        glue.create_table(DatabaseName=DATABASE, TableInput={
            "Name": table.name, "TableType": "EXTERNAL_TABLE",
            "PartitionKeys": glue_columns(table.partition_keys),
            "StorageDescriptor": {"Columns": glue_columns(table.columns), "Location": f"s3://lake/{table.name}/"},
        })
    athena = boto3.client("athena", endpoint_url=moto_endpoint, region_name=REGION)
    if WORKGROUP not in {w["Name"] for w in athena.list_work_groups()["WorkGroups"]}:
        athena.create_work_group(Name=WORKGROUP, Configuration={
            "ResultConfiguration": {"OutputLocation": "s3://athena-results/"}, "EnforceWorkGroupConfiguration": True})
    return glue


def _engine(moto_endpoint, s3_lake, rows_per_file: list[int]) -> AthenaWritingParquet:
    return AthenaWritingParquet(lake_url=s3_lake.url, region=REGION, endpoint_url=moto_endpoint,
                                s3_endpoint_url=moto_endpoint, poll_interval_seconds=0.05,
                                rows_per_file=rows_per_file)


def _location(glue, dataset: str, partition: TradePartition) -> str:
    values = [str(partition.year), str(partition.month_number), partition.symbol]
    found = glue.get_partition(DatabaseName=DATABASE, TableName=dataset, PartitionValues=values)["Partition"]
    assert found["StorageDescriptor"]["Columns"] == glue_columns(ANALYTICS_TABLES[dataset].columns)
    return found["StorageDescriptor"]["Location"]


def _keys(s3_lake, prefix: str) -> list[str]:
    return sorted(o.key for o in s3_lake.list(prefix))


def test_declared_analytics_columns_are_what_the_queries_return():
    """Names and order exactly; types as DuckDB derives them from the typed (empty) trades table, which
    follows the same rules as Athena here (SUM of decimal(p,8) -> decimal(38,8), COUNT -> bigint)."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA market_data")
    con.execute(f"CREATE VIEW market_data.trades_binance AS {TRADES.empty_select}")
    for dataset, table in ANALYTICS_TABLES.items():
        sql, parameters = bind(get_query(dataset), partition_parameters(BTC)).for_duckdb()  # as the local engine
        described = con.execute(f"DESCRIBE {sql}", parameters).fetchall()
        assert [(row[0], row[1]) for row in described] == [(n, t.upper()) for n, t in table.columns], dataset


def test_unload_registers_the_new_run_and_replaces_the_previous_one(moto_endpoint, s3_lake, catalog):
    eth = _engine(moto_endpoint, s3_lake, [7]).write_analytics("ohlcv_1m", ETH)

    first = _engine(moto_endpoint, s3_lake, [3, 2]).write_analytics("ohlcv_1m", BTC)
    assert (first.rows, first.bytes) == (5, len(parquet_bytes("ohlcv_1m", 3)) + len(parquet_bytes("ohlcv_1m", 2)))
    assert first.metadata()["files"] == 2 and first.metadata()["glue_partition_created"] is True
    assert first.metadata()["dagster/row_count"] == 5
    query_url = first.metadata()["athena_query_url"]  # a link in the UI, to the query in Athena's console
    assert query_url.url.endswith(f"#/query-editor/history/{first.metadata()['athena_query_id']}")
    assert query_url.url.startswith(f"https://{REGION}.console.aws.amazon.com/athena/")
    partition_key = lake_key(Zone.ANALYTICS, BTC, dataset="ohlcv_1m")
    assert first.uri.startswith(s3_lake.uri(partition_key) + "/run-") and first.uri.endswith("/")

    athena = boto3.client("athena", endpoint_url=moto_endpoint, region_name=REGION)
    execution = athena.get_query_execution(QueryExecutionId=first.metadata()["athena_query_id"])["QueryExecution"]
    select, parameters = bind(get_query("ohlcv_1m"), partition_parameters(BTC)).for_athena()
    assert execution["Query"] == unload_statement(select, first.uri)
    assert execution["Query"].startswith("UNLOAD (\nSELECT date_trunc('minute', trade_time) AS bar_time")
    assert "WHERE year = ? AND month = ? AND symbol = ?" in execution["Query"]
    assert execution["Query"].endswith(f") TO '{first.uri}' WITH (format = 'PARQUET', compression = 'SNAPPY')")
    assert execution["ExecutionParameters"] == ["2025", "7", "'BTCUSDT'"]
    assert execution["WorkGroup"] == WORKGROUP
    assert _location(catalog, "ohlcv_1m", BTC) == first.uri

    second = _engine(moto_endpoint, s3_lake, [4]).write_analytics("ohlcv_1m", BTC)
    assert (second.rows, second.bytes) == (4, len(parquet_bytes("ohlcv_1m", 4)))
    assert second.metadata()["glue_partition_created"] is False
    assert second.metadata()["previous_versions_deleted"] == 1
    assert _location(catalog, "ohlcv_1m", BTC) == second.uri != first.uri
    first_key, second_key = (o.uri.removeprefix(s3_lake.uri()) for o in (first, second))
    assert _keys(s3_lake, first_key) == []
    assert _keys(s3_lake, second_key) == [f"{second_key}{second.metadata()['athena_query_id']}_00000"]
    assert len(analytics_runs(s3_lake, BTC, "ohlcv_1m")) == 1
    # Other partitions and datasets are untouched.
    assert _location(catalog, "ohlcv_1m", ETH) == eth.uri
    assert len(_keys(s3_lake, eth.uri.removeprefix(s3_lake.uri()))) == 1
    assert catalog.get_partitions(DatabaseName=DATABASE, TableName="daily_trade_stats")["Partitions"] == []


def test_a_failed_unload_keeps_the_registered_version_and_cleans_its_prefix(moto_endpoint, s3_lake, catalog):
    """An UNLOAD that left no rows although trades are registered fails before the Glue switch."""
    register_glue_partitions(catalog, BTC, {1: s3_lake.uri(lake_key(Zone.PROCESSED, BTC, day=1)) + "/"})
    good = _engine(moto_endpoint, s3_lake, [2]).write_analytics("daily_trade_stats", BTC)

    with pytest.raises(CatalogError, match=r"left no rows under s3://.*trades_binance has 1 day\(s\) of BTCUSDT"):
        _engine(moto_endpoint, s3_lake, [0]).write_analytics("daily_trade_stats", BTC)

    assert _location(catalog, "daily_trade_stats", BTC) == good.uri
    partition_key = lake_key(Zone.ANALYTICS, BTC, dataset="daily_trade_stats")
    assert _keys(s3_lake, partition_key + "/") == _keys(s3_lake, good.uri.removeprefix(s3_lake.uri()))
    assert len(_keys(s3_lake, partition_key + "/")) == 1


def test_an_empty_partition_without_trades_registers_an_empty_version(moto_endpoint, s3_lake, catalog):
    """No trades registered for the partition: an UNLOAD that writes nothing is the right answer (0 rows),
    as the local engine registers an empty file."""
    empty = _engine(moto_endpoint, s3_lake, []).write_analytics("ohlcv_1m", ETH)
    assert (empty.rows, empty.bytes, empty.metadata()["files"]) == (0, 0, 0)
    assert _location(catalog, "ohlcv_1m", ETH) == empty.uri
