"""`market-etl query` as its users meet it: a separate process that imports neither Dagster nor Spark, prints
only its result on stdout and one summary line on stderr, exits with a documented code, refuses anything
but one read statement before any engine (moto's Athena included) sees it, and streams --output files."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest

from market_etl.cli import main as cli_main
from market_etl.core.keys import TradePartition
from market_etl.core.sql import SqlRejected, bind, get_query, require_read_only
from market_etl.lake.query_engine import DuckDBQueryEngine
from market_etl.query_cli import ExitCode
from market_etl.resources.sql import DuckDBSqlEngine
from market_etl_tests.lake_fixtures import build_processed_lake, publish_partition
from market_etl_tests.moto_fixtures import seed_athena_result

REGION = "us-east-1"
BTC, ETH = TradePartition("BTCUSDT", "2025-07"), TradePartition("ETHUSDT", "2025-07")
MARKET_ETL = os.path.join(os.path.dirname(sys.executable), "market-etl")
HEAVY = ("dagster", "pyspark")


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("query-cli-lake")
    build_processed_lake(root, [BTC, ETH], range(1, 3), 200, seed=11)
    for partition in (BTC, ETH):
        publish_partition(root, partition)
    return root


def _env(lake: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_ETL_")}
    return {**env, "MARKET_ETL_RUNTIME": "local", "MARKET_ETL_LAKE": str(lake), **extra}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([MARKET_ETL, *args], env=env, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- imports and quiet output

IMPORTS_PROBE = """
import sys
from market_etl.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as done:
    code = done.code
sys.stdout.flush()
print("LOADED:" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [
    ["query", "trades_by_symbol", "--format", "csv"],
    ["query", "--sql", "SELECT count(*) AS n FROM market_data.trades_binance WHERE symbol = :symbol",
     "--symbol", "BTCUSDT"],
    ["query", "--list"],
    ["--help"],
    ["query", "--help"],
])
def test_query_and_help_import_neither_dagster_nor_spark(lake_root, args):
    done = subprocess.run([sys.executable, "-c", IMPORTS_PROBE.format(heavy=HEAVY), *args], env=_env(lake_root),
                          capture_output=True, text=True, timeout=120)
    assert done.stderr.splitlines()[-1] == "LOADED:", done.stderr


def test_the_probe_sees_dagster_when_a_command_loads_it(lake_root, tmp_path):
    """The probe above can fail: `init-home` does import Dagster."""
    done = subprocess.run([sys.executable, "-c", IMPORTS_PROBE.format(heavy=HEAVY), "init-home"],
                          env=_env(lake_root, DAGSTER_HOME=str(tmp_path)), capture_output=True, text=True,
                          timeout=300)
    assert "dagster" in done.stderr.splitlines()[-1], done.stderr


def test_a_named_query_runs_without_sqlglot_once_compiled(lake_root, tmp_path):
    """The first run compiles the named queries into the cache directory; later runs neither import sqlglot
    nor parse anything, and print the same result. A damaged cache file is compiled again."""
    env = _env(lake_root, XDG_CACHE_HOME=str(tmp_path / "cache"))
    args = ["query", "vwap_1m", "--symbol", "BTCUSDT", "--date", "2025-07-02", "--format", "csv"]
    probe = IMPORTS_PROBE.format(heavy=("sqlglot",))
    runs = [subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True,
                           timeout=120) for _ in range(2)]
    assert [r.stderr.splitlines()[-1] for r in runs] == ["LOADED:sqlglot", "LOADED:"]
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.count("\n") > 10
    (cache,) = (tmp_path / "cache" / "market-etl").iterdir()
    cache.write_text("{not json")
    again = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True, timeout=120)
    assert again.stdout == runs[0].stdout and again.stderr.splitlines()[-1] == "LOADED:sqlglot"
    assert json.loads(cache.read_text())[0]["duckdb"]


def test_stdout_holds_exactly_the_result_and_stderr_one_summary_line(lake_root):
    done = _run(["query", "trades_by_symbol", "--format", "csv"], _env(lake_root))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["symbol"] for r in rows] == ["BTCUSDT", "ETHUSDT"] and int(rows[0]["trades"]) == 400
    (summary,) = done.stderr.splitlines()
    assert summary.startswith("(2 rows in ") and "on duckdb" in summary

    as_json = _run(["query", "trades_by_symbol", "--format", "json"], _env(lake_root))
    assert [r["volume"] for r in json.loads(as_json.stdout)] == [r["volume"] for r in rows]
    assert len(as_json.stderr.splitlines()) == 1


def test_library_logs_only_with_verbose(lake_root, tmp_path):
    """`init-home` loads Dagster, whose alembic plugins log at INFO: hidden by default, shown with -v."""
    env = _env(lake_root, DAGSTER_HOME=str(tmp_path / "home"))
    quiet = _run(["init-home"], env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    verbose = _run(["-v", "init-home"], env)
    assert verbose.returncode == 0 and "INFO alembic" in verbose.stderr


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize("args, code", [
    (["query", "trades_by_symbol"], ExitCode.OK),
    (["query", "vwap_1m", "--symbol", "BTCUSDT"], ExitCode.USAGE),
    (["query", "no_such_query"], ExitCode.USAGE),
    (["query", "trades_by_symbol", "--format", "xml"], ExitCode.USAGE),
    (["query", "trades_by_symbol", "--output", "result.xlsx"], ExitCode.USAGE),
    (["query", "--sql", "SELECT 1; SELECT 2"], ExitCode.SQL_REJECTED),
    (["query", "--sql", "DELETE FROM market_data.trades_binance"], ExitCode.SQL_REJECTED),
    (["query", "--sql", "SELECT * FROM market_data.no_such_table"], ExitCode.SQL_REJECTED),
])
def test_exit_codes(lake_root, args, code):
    done = _run(args, _env(lake_root))
    assert done.returncode == code, done.stderr
    if code != ExitCode.OK:
        assert done.stdout == "" and done.stderr.strip()


def test_exit_code_no_data_without_a_catalog(tmp_path):
    done = _run(["query", "trades_by_symbol"], _env(tmp_path / "empty"))
    assert done.returncode == ExitCode.NO_DATA and "materialise market_data/trades_binance first" in done.stderr


def test_exit_code_engine_failed_when_a_registered_file_is_gone(tmp_path):
    root = tmp_path / "lake"
    build_processed_lake(root, [BTC], range(1, 2), 20, seed=1)
    publish_partition(root, BTC)
    next(root.rglob("*.parquet")).unlink()
    done = _run(["query", "trades_by_symbol"], _env(root))
    assert done.returncode == ExitCode.ENGINE_FAILED and "DuckDB could not run" in done.stderr


# ---------------------------------------------------------------- the read-only guard

READS = [
    "SELECT 1",
    "WITH t AS (SELECT 1 AS a) SELECT a FROM t",
    "VALUES (1, 'a')",
    "SELECT 1 UNION ALL SELECT 2",
    "EXPLAIN SELECT count(*) FROM market_data.trades_binance",
    "explain analyze select 1",
    "DESCRIBE market_data.trades_binance",
]
WRITES = [
    "DROP TABLE market_data.trades_binance",
    "ALTER TABLE market_data.trades_binance DROP PARTITION (year = 2025)",
    "INSERT INTO market_data.trades_binance SELECT * FROM market_data.trades_binance",
    "DELETE FROM market_data.trades_binance",
    "UPDATE market_data.trades_binance SET price = 0",
    "CREATE TABLE x AS SELECT 1 AS a",
    "UNLOAD (SELECT 1) TO 's3://bucket/x/' WITH (format = 'PARQUET')",
    "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE",
    "SELECT 1; DROP TABLE market_data.trades_binance",
    "EXPLAIN ANALYZE DELETE FROM market_data.trades_binance",
    "SET SESSION query_max_run_time = '1h'",
    "MSCK REPAIR TABLE market_data.trades_binance",
    "COPY market_data.trades_binance TO '/tmp/x.csv'",
    "ATTACH '/tmp/other.duckdb' AS other",
    "SELECT 1 AS a INTO new_table",
]


@pytest.mark.parametrize("sql", READS)
def test_read_statements_pass_the_guard(sql):
    require_read_only(sql)


@pytest.mark.parametrize("sql", WRITES)
def test_everything_else_is_refused(sql):
    with pytest.raises(SqlRejected):
        require_read_only(sql)


def test_ad_hoc_sql_is_checked_when_bound():
    with pytest.raises(SqlRejected, match="only read statements"):
        bind("DROP VIEW market_data.trades_binance")


@pytest.fixture
def aws_runtime(moto_endpoint, monkeypatch):
    """The query command on the aws runtime, its Athena client pointed at moto by botocore's own variable."""
    monkeypatch.setenv("MARKET_ETL_RUNTIME", "aws")
    monkeypatch.setenv("MARKET_ETL_LAKE", "s3://lake/")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ATHENA", moto_endpoint)
    athena = boto3.client("athena", endpoint_url=moto_endpoint, region_name=REGION)
    if "market-etl" not in {w["Name"] for w in athena.list_work_groups()["WorkGroups"]}:
        athena.create_work_group(Name="market-etl", Configuration={
            "ResultConfiguration": {"OutputLocation": "s3://athena-results/"}, "EnforceWorkGroupConfiguration": True})
    return athena


def _executions(athena) -> set[str]:
    """The workgroup's query executions so far (moto's backends live as long as the test process)."""
    return set(athena.list_query_executions(WorkGroup="market-etl")["QueryExecutionIds"])


@pytest.mark.parametrize("sql", WRITES)
def test_refused_statements_never_reach_athena(aws_runtime, capsys, sql):
    before = _executions(aws_runtime)
    assert cli_main(["query", "--sql", sql]) == ExitCode.SQL_REJECTED
    assert "market-etl query:" in capsys.readouterr().err
    assert _executions(aws_runtime) == before


def test_a_read_statement_does_reach_athena(aws_runtime, capsys):
    """The control for the test above: the same path with a SELECT starts a query execution in moto."""
    before = _executions(aws_runtime)
    assert cli_main(["query", "--sql", "SELECT count(*) FROM market_data.trades_binance"]) == ExitCode.OK
    assert len(_executions(aws_runtime) - before) == 1


# ---------------------------------------------------------------- --output


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_output_file_holds_the_same_result(lake_root, tmp_path, suffix):
    target = tmp_path / "out" / f"vwap{suffix}"
    args = ["query", "vwap_1m", "--symbol", "BTCUSDT", "--date", "2025-07-02"]
    done = _run([*args, "--output", str(target)], _env(lake_root))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and f"written to {target}" in done.stderr
    expected = DuckDBQueryEngine.for_lake(str(lake_root)).query(
        bind(get_query("vwap_1m"), {"symbol": "BTCUSDT", "year": 2025, "month": 7, "day": 2}))
    if suffix == ".parquet":
        table = pq.read_table(target)
        got = [tuple(r.values()) for r in table.to_pylist()]
        assert str(table.schema.field("volume").type).startswith("decimal128")
        assert [(m.replace(tzinfo=None), v, q, n) for m, v, q, n in got] == [
            (m.replace(tzinfo=None), v, q, n) for m, v, q, n in expected.rows]
    elif suffix == ".csv":
        got = list(csv.DictReader(target.open()))
        assert [Decimal(r["volume"]) for r in got] == [r[2] for r in expected.rows]
    else:
        got = json.loads(target.read_text())
        assert [Decimal(str(r["volume"])) for r in got] == [r[2] for r in expected.rows]
        assert [r["trades"] for r in got] == [r[3] for r in expected.rows]
    assert len(got) == len(expected.rows) > 0
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left behind


def test_a_failed_export_leaves_no_file(lake_root, tmp_path):
    target = tmp_path / "out.parquet"
    done = _run(["query", "--sql", "SELECT CAST('x' AS integer) AS broken", "--output", str(target)],
                _env(lake_root))
    assert done.returncode == ExitCode.ENGINE_FAILED, done.stderr
    assert list(tmp_path.iterdir()) == []


def _seed_athena_result(moto_endpoint: str, rows: list[list[str]]) -> None:
    seed_athena_result(moto_endpoint, [("minute", "timestamp", 3, 0), ("volume", "decimal", 28, 8),
                                       ("trades", "bigint", 19, 0)], rows)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_output_on_athena_is_written_page_by_page(aws_runtime, moto_endpoint, tmp_path, capsys, suffix):
    rows = [["2025-07-02 00:05:00.000", "0.15190077", "2"], ["2025-07-02 00:06:00.000", "12345.12345678", "7"]]
    _seed_athena_result(moto_endpoint, rows)
    target = tmp_path / f"result{suffix}"
    # Its own SQL text: other tests find their executions in the shared moto server by the query's text.
    sql = "SELECT bar_time AS minute, volume, trades FROM market_data.ohlcv_1m WHERE symbol = :symbol"
    args = ["query", "--sql", sql, "--symbol", "BTCUSDT", "--output", str(target)]
    assert cli_main(args) == 0
    assert "2 rows written" in capsys.readouterr().err
    if suffix == ".parquet":
        table = pq.read_table(target)
        assert str(table.schema.field("volume").type) == "decimal128(28, 8)"
        assert table.column("volume").to_pylist() == [Decimal("0.15190077"), Decimal("12345.12345678")]
        assert table.column("trades").to_pylist() == [2, 7]
    elif suffix == ".csv":
        assert [r["volume"] for r in csv.DictReader(target.open())] == ["0.15190077", "12345.12345678"]
    else:
        assert json.loads(target.read_text())[1] == {"minute": "2025-07-02T00:06:00", "volume": "12345.12345678",
                                                     "trades": 7}


PEAK_PROBE = """
import sys
from market_etl.cli import main
from market_etl.core.memory import peak_rss_bytes
code = main(sys.argv[1:])
print(f"PEAK:{code}:{peak_rss_bytes()}", file=sys.stderr)
"""
BIG_ROWS = 800 * 5000  # the lake's 800 trades, each 5,000 times


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_large_export_never_holds_the_result(lake_root, tmp_path, suffix):
    """4M rows: as Python rows the result alone would take ~500 MB; the export process peaks far below."""
    target = tmp_path / f"big{suffix}"
    sql = ("SELECT a.trade_id, a.price, a.trade_time, x FROM market_data.trades_binance a "
           "CROSS JOIN UNNEST(sequence(1, 5000)) AS t(x)")
    done = subprocess.run([sys.executable, "-c", PEAK_PROBE, "query", "--sql", sql, "--output", str(target)],
                          env=_env(lake_root), capture_output=True, text=True, timeout=300)
    code, peak = done.stderr.splitlines()[-1].removeprefix("PEAK:").split(":")
    assert code == "0", done.stderr
    assert f"{BIG_ROWS} rows written" in done.stderr
    if suffix == ".parquet":
        assert pq.ParquetFile(target).metadata.num_rows == BIG_ROWS
    else:
        assert sum(1 for _ in target.open()) == BIG_ROWS + 1
    assert int(peak) < 250 * 2**20, f"peak RSS {int(peak) / 2**20:.0f} MiB"
