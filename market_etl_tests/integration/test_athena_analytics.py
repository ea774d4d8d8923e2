"""Analytics on the aws runtime: an Athena UNLOAD into a fresh run prefix, committed to an audit branch of
the Iceberg table market_data.<dataset> in moto's Glue, checked there, then published (replacing that
symbol-month); the declared analytics columns are what the queries return.

moto's Athena records a query (text, execution parameters, workgroup) but never runs SQL, so it writes
no UNLOAD output. `AthenaWritingParquet` below is a TEST-ONLY stand-in for that one side effect: after the
real StartQueryExecution against moto, it reads the UNLOAD's TO location back from the query text moto
recorded and puts real Parquet files there, as Athena would. Everything else (S3, Glue, the engine's
listing, footer reads, the Iceberg commit through pyiceberg's Glue catalog) runs against moto's real APIs.
"""
from __future__ import annotations

import io
import re

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market_etl.core.keys import TradePartition, Zone, lake_key
from market_etl.core.sql import BoundQuery, bind, get_query, partition_parameters
from market_etl.core.tables import ANALYTICS_TABLES, DATABASE, TRADES, TRADES_REJECTED
from market_etl.lake.duckdb_catalog import view_sql
from market_etl.lake.iceberg import load_table, open_catalog, partition_filter, snapshot_files
from market_etl.lake.query_engine import time_travel_sql
from market_etl.resources.sql import AthenaSqlEngine, unload_statement, with_partition_columns
from market_etl_tests.moto_fixtures import seed_athena_result

REGION = "us-east-1"
WORKGROUP = "market-etl"
BTC, ETH = TradePartition("BTCUSDT", "2025-07"), TradePartition("ETHUSDT", "2025-07")
UNLOAD_TARGET = re.compile(r"\n\) TO '(s3://[^']+)' WITH \(format = 'PARQUET', compression = 'SNAPPY'\)")
ARROW_TYPES = {"timestamp": pa.timestamp("us"), "int": pa.int32(), "string": pa.string(), "date": pa.date32(), "bigint": pa.int64(), "double": pa.float64()}


def _arrow_type(athena_type: str) -> pa.DataType:
    decimal = re.fullmatch(r"decimal\((\d+),(\d+)\)", athena_type)
    return pa.decimal128(int(decimal[1]), int(decimal[2])) if decimal else ARROW_TYPES[athena_type]


def parquet_bytes(dataset: str, rows: int, partition: TradePartition = None) -> bytes:
    """A real Parquet file with the dataset's declared columns and `rows` rows (deterministic bytes): null
    data columns, the partition's year, month and symbol (what the UNLOADed query selects)."""
    spec = ANALYTICS_TABLES[dataset]
    values = {"year": partition.year, "month": partition.month_number, "symbol": partition.symbol} if partition else {}
    table = pa.table({name: pa.array([values.get(name)] * rows, _arrow_type(type_)) for name, type_ in spec.columns})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()


class AthenaWritingParquet(AthenaSqlEngine):
    """TEST ONLY: sends the UNLOAD to moto's Athena, then writes one Parquet file per entry of
    `rows_per_file` at the location taken from the query text moto recorded (moto writes nothing)."""

    rows_per_file: list[int]
    fail_after_writing: bool = False

    def _unload(self, query: BoundQuery, target: str) -> str:
        query_id = super()._unload(query, target)
        athena = boto3.client("athena", endpoint_url=self.endpoint_url, region_name=REGION)
        recorded = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Query"]
        bucket, prefix = UNLOAD_TARGET.search(recorded)[1].removeprefix("s3://").split("/", 1)
        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint_url, region_name=REGION)
        partition = TradePartition(query.values["symbol"], f"{query.values['year']}-{query.values['month']:02d}")
        for number, rows in enumerate(self.rows_per_file):
            s3.put_object(Bucket=bucket, Key=f"{prefix}{query_id}_{number:05d}",
                          Body=parquet_bytes(query.name, rows, partition))
        if self.fail_after_writing:
            raise RuntimeError("Athena query failed after writing part of its output")
        return query_id


@pytest.fixture
def catalog(moto_endpoint, s3_lake):
    """pyiceberg's Glue catalog on moto, without the market_data tables (the code creates them), and the
    project workgroup."""
    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name=REGION)
    for table in (TRADES, TRADES_REJECTED, *ANALYTICS_TABLES.values()):
        try:
            glue.delete_table(DatabaseName=DATABASE, Name=table.name)
        except glue.exceptions.EntityNotFoundException:
            pass
    athena = boto3.client("athena", endpoint_url=moto_endpoint, region_name=REGION)
    if WORKGROUP not in {w["Name"] for w in athena.list_work_groups()["WorkGroups"]}:
        athena.create_work_group(Name=WORKGROUP, Configuration={
            "ResultConfiguration": {"OutputLocation": "s3://athena-results/"}, "EnforceWorkGroupConfiguration": True})
    return open_catalog(s3_lake, glue=True, region=REGION, glue_endpoint_url=moto_endpoint,
                        s3_endpoint_url=moto_endpoint)


def _engine(moto_endpoint, s3_lake, rows_per_file: list[int], **kw) -> AthenaWritingParquet:
    return AthenaWritingParquet(lake_url=s3_lake.url, region=REGION, endpoint_url=moto_endpoint,
                                s3_endpoint_url=moto_endpoint, poll_interval_seconds=0.05,
                                rows_per_file=rows_per_file, **kw)


def _published(catalog, s3_lake, dataset: str, partition: TradePartition) -> list[str]:
    table = load_table(catalog, s3_lake, ANALYTICS_TABLES[dataset])
    return sorted(f.path for f in snapshot_files(table, row_filter=partition_filter(ANALYTICS_TABLES[dataset],
                                                                                     partition)))


def _keys(s3_lake, prefix: str) -> list[str]:
    return sorted(o.key for o in s3_lake.list(prefix))


def test_declared_analytics_columns_are_what_the_queries_return():
    """Names and order exactly; types as DuckDB derives them from the typed (empty) trades table, which
    follows the same rules as Athena here (SUM of decimal(p,8) -> decimal(38,8), COUNT -> bigint); the
    partition columns added for the files last."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA market_data")
    con.execute(view_sql(TRADES, []))
    for dataset, table in ANALYTICS_TABLES.items():
        query = with_partition_columns(bind(get_query(dataset), partition_parameters(BTC)))
        sql, parameters = query.for_duckdb()  # as the local engine
        described = con.execute(f"DESCRIBE {sql}", parameters).fetchall()
        expected = [(n, {"int": "INTEGER", "string": "VARCHAR"}.get(t, t.upper())) for n, t in table.columns]
        assert [(row[0], row[1]) for row in described] == expected, dataset


def _build(engine: AthenaWritingParquet, dataset: str, partition: TradePartition, catalog, checks=()):
    """Write, audit (with `checks`: moto answers their queries with what the test seeded), publish. Forced: the
    trades table is empty here, so every build would find the last one up to date."""
    return engine.build_analytics(dataset, partition, catalog, list(checks), force=True)


def test_unload_is_committed_to_the_iceberg_table_replacing_the_previous_run(moto_endpoint, s3_lake, catalog):
    eth = _build(_engine(moto_endpoint, s3_lake, [7]), "ohlcv_1m", ETH, catalog).files

    build = _build(_engine(moto_endpoint, s3_lake, [3, 2]), "ohlcv_1m", BTC, catalog)
    first, meta = build.files, build.metadata()
    assert build.status == "published"
    assert first.rows == 5 and meta["files"] == 2 and meta["files_added"] == 2
    assert meta["dagster/row_count"] == 5
    query_url = meta["athena_query_url"]  # a link in the UI, to the query in Athena's console
    assert query_url.url.endswith(f"#/query-editor/history/{meta['athena_query_id']}")
    assert query_url.url.startswith(f"https://{REGION}.console.aws.amazon.com/athena/")
    partition_key = lake_key(Zone.ANALYTICS, BTC, dataset="ohlcv_1m")
    assert first.uri.startswith(s3_lake.uri(partition_key) + "/run-") and first.uri.endswith("/")

    athena = boto3.client("athena", endpoint_url=moto_endpoint, region_name=REGION)
    execution = athena.get_query_execution(QueryExecutionId=meta["athena_query_id"])["QueryExecution"]
    select, parameters = with_partition_columns(bind(get_query("ohlcv_1m"), partition_parameters(BTC))).for_athena()
    assert execution["Query"] == unload_statement(select, first.uri)
    assert "WHERE year = ? AND month = ? AND symbol = ?" in execution["Query"]
    assert execution["ExecutionParameters"] == ["2025", "7", "'BTCUSDT'", "2025", "7", "'BTCUSDT'"]
    assert execution["WorkGroup"] == WORKGROUP
    assert all(p.startswith(first.uri) for p in _published(catalog, s3_lake, "ohlcv_1m", BTC))
    # Main was not moved by anyone else: it was fast-forwarded to the very snapshot the audit read.
    assert meta["snapshot_id"] == meta["audited_snapshot_id"]

    second = _build(_engine(moto_endpoint, s3_lake, [4]), "ohlcv_1m", BTC, catalog)
    assert second.files.rows == 4 and second.metadata()["files_removed"] == 2
    assert _published(catalog, s3_lake, "ohlcv_1m", BTC) == [
        f"{second.files.uri}{second.metadata()['athena_query_id']}_00000"]
    # Other partitions are untouched.
    assert _published(catalog, s3_lake, "ohlcv_1m", ETH) == [f"{eth.uri}{eth.details['athena_query_id']}_00000"]


def test_a_failed_unload_keeps_the_published_version_and_cleans_its_prefix(moto_endpoint, s3_lake, catalog):
    good = _build(_engine(moto_endpoint, s3_lake, [2]), "daily_trade_stats", BTC, catalog).files
    published = _published(catalog, s3_lake, "daily_trade_stats", BTC)

    with pytest.raises(RuntimeError, match="failed after writing"):
        _build(_engine(moto_endpoint, s3_lake, [5], fail_after_writing=True), "daily_trade_stats", BTC, catalog)

    assert _published(catalog, s3_lake, "daily_trade_stats", BTC) == published
    partition_key = lake_key(Zone.ANALYTICS, BTC, dataset="daily_trade_stats")
    assert _keys(s3_lake, partition_key + "/") == _keys(s3_lake, good.uri.removeprefix(s3_lake.uri()))


def test_an_empty_partition_commits_an_empty_version(moto_endpoint, s3_lake, catalog):
    """No trades for the partition: an UNLOAD that writes nothing is the right answer (0 rows)."""
    _build(_engine(moto_endpoint, s3_lake, [3]), "ohlcv_1m", ETH, catalog)
    empty = _build(_engine(moto_endpoint, s3_lake, []), "ohlcv_1m", ETH, catalog)
    assert (empty.files.rows, empty.files.bytes, empty.metadata()["files"]) == (0, 0, 0)
    assert _published(catalog, s3_lake, "ohlcv_1m", ETH) == []


CHECK = ("ohlc_consistent", "check_ohlcv_1m_ohlc_consistent", True)


@pytest.mark.parametrize("failures", ["0", "1"])
def test_athena_checks_read_the_audited_snapshot_and_a_failure_keeps_the_published_version(
        moto_endpoint, s3_lake, catalog, failures):
    """On Glue: the version is committed to an audit branch, the check query reads that snapshot of
    ohlcv_1m (FOR VERSION AS OF) and nothing else at a past version; only a passing check moves main."""
    _build(_engine(moto_endpoint, s3_lake, [3]), "ohlcv_1m", BTC, catalog)
    published = _published(catalog, s3_lake, "ohlcv_1m", BTC)
    # Results are handed out in order of fetching: pyathena fetches the UNLOAD's (empty) result first.
    seed_athena_result(moto_endpoint, [], [])
    seed_athena_result(moto_endpoint, [("bars", "bigint", 19, 0), ("failures", "bigint", 19, 0)], [["4", failures]])

    build = _build(_engine(moto_endpoint, s3_lake, [4]), "ohlcv_1m", BTC, catalog, [CHECK])

    audited = build.audited.snapshot_id
    athena = boto3.client("athena", endpoint_url=moto_endpoint, region_name=REGION)
    [check_sql] = [q for q in _executed_queries(athena) if f"FOR VERSION AS OF {audited}" in q]
    assert f"FROM market_data.ohlcv_1m FOR VERSION AS OF {audited}" in check_sql
    table = load_table(catalog, s3_lake, ANALYTICS_TABLES["ohlcv_1m"])
    assert set(table.metadata.refs) == {"main"}  # the audit branch is gone either way
    if failures == "0":
        assert build.status == "published" and table.current_snapshot().snapshot_id == audited
        assert _published(catalog, s3_lake, "ohlcv_1m", BTC) != published
    else:
        assert build.status == "not published" and build.failed_checks == ["ohlc_consistent"]
        assert _published(catalog, s3_lake, "ohlcv_1m", BTC) == published
        assert table.current_snapshot().snapshot_id != audited


def _executed_queries(athena) -> list[str]:
    ids = athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"]
    return [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]["Query"] for i in ids]


def test_time_travel_restricted_to_one_table_leaves_the_others_current():
    sql = ("SELECT * FROM market_data.ohlcv_1m o JOIN market_data.trades_binance t ON o.symbol = t.symbol "
           "WHERE o.year = ?")
    assert time_travel_sql(sql, "42", ("ohlcv_1m",)) == (
        "SELECT * FROM market_data.ohlcv_1m FOR VERSION AS OF 42 o JOIN market_data.trades_binance t "
        "ON o.symbol = t.symbol WHERE o.year = ?")
    assert time_travel_sql(sql, "42").count("FOR VERSION AS OF 42") == 2
