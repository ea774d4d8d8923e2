"""`market-etl bench query` (part of `make bench`): what a person querying the lake waits for.

On a demo-sized local lake (3 symbols x 3 months x every day x 2,000 trades = 552,000 trades, generated
here with DuckDB, registered in the DuckDB catalog and committed to Iceberg tables with pyiceberg's
add_files), it measures:

- `market-etl query vwap_1m --symbol BTCUSDT --date 2025-07-15` (named) and a `--sql` count, each as a fresh
  process the way a user runs it: wall time from spawn to exit, and the share of it spent before the engine
  runs the query (interpreter, imports, parsing and binding: wall minus the engine seconds the command
  reports on stderr), and the process's CPU seconds (what the wall time comes down to on an idle machine:
  the command is single-threaded until the engine runs). Target: <= 0.5 s wall.
- `market_etl.read.trades` for one symbol-day and one symbol-month, in a running process (a notebook):
  seconds per call, the catalog opened afresh each time.

The section it writes replaces its own previous one in the results file (`make bench` runs it after
`bench pipeline`, which rewrites the file).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from market_etl.core.keys import TradePartition, Zone, lake_key

SYMBOLS, MONTHS, TRADES_PER_DAY = ("BTCUSDT", "ETHUSDT", "BNBUSDT"), ("2025-07", "2025-08", "2025-09"), 2000
TARGET_SECONDS = 0.5
BEGIN, END = "<!-- bench query -->", "<!-- /bench query -->"
COMMANDS = {
    "named: vwap_1m, one symbol-day": ["query", "vwap_1m", "--symbol", "BTCUSDT", "--date", "2025-07-15",
                                       "--format", "csv"],
    "--sql: count of one symbol-month": ["query", "--sql", "SELECT count(*) AS trades FROM market_data.trades_binance "
                                         "WHERE symbol = :symbol AND year = :year AND month = :month",
                                         "--symbol", "ETHUSDT", "--month", "2025-08", "--format", "csv"],
}
ENGINE_SECONDS = re.compile(r" in ([0-9.]+) s on ")


def build_lake(root: Path, trades_per_day: int = TRADES_PER_DAY) -> None:
    """The trades (partition columns inside) committed to the Iceberg table market_data.trades_binance, one
    snapshot per symbol-month, then the DuckDB views over its current snapshot (what a publish leaves)."""
    import duckdb
    from pyiceberg.catalog.sql import SqlCatalog

    from market_etl.read import ICEBERG_CATALOG_KEY, ICEBERG_CATALOG_NAME
    from market_etl.resources.sql import DuckDBSqlEngine

    shutil.rmtree(root, ignore_errors=True)
    (root / "catalog").mkdir(parents=True)
    engine = DuckDBSqlEngine(lake_url=str(root))
    catalog = SqlCatalog(ICEBERG_CATALOG_NAME, uri=f"sqlite:///{root / ICEBERG_CATALOG_KEY}", warehouse=root.as_uri())
    catalog.create_namespace_if_not_exists("market_data")
    table = None
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for month in MONTHS:
        for symbol in SYMBOLS:
            partition = TradePartition(symbol, month)
            days = (partition.next_month_first_day - partition.first_day).days
            con.execute(f"""CREATE OR REPLACE TABLE trades AS
                SELECT (row_number() OVER (ORDER BY t))::BIGINT AS trade_id, price, quantity,
                       (price * quantity)::DECIMAL(28,8) AS quote_qty, t AS trade_time,
                       random() < 0.5 AS is_buyer_maker, true AS is_best_match
                FROM (SELECT make_timestamptz({partition.year}, {partition.month_number}, d, 0, 0, 0)
                             + to_microseconds((random() * 86399999999)::BIGINT) AS t,
                             (60000 * (1 + (random() - 0.5) / 50))::DECIMAL(18,8) AS price,
                             pow(10, random() * 5.3 - 4)::DECIMAL(28,8) AS quantity
                      FROM range(1, {days + 1}) r(d), range({trades_per_day}))""")
            files = []
            for day in range(1, days + 1):
                processed = root / lake_key(Zone.PROCESSED, partition, day=day)
                processed.mkdir(parents=True)
                where = f"day(trade_time) = {day}"
                con.execute(f"COPY (SELECT * FROM trades WHERE {where} ORDER BY trade_id) "
                            f"TO '{processed / 'part-00000.snappy.parquet'}' (FORMAT parquet, COMPRESSION snappy)")
                iceberg = (root / "market_data.db" / "trades_binance" / "data" /
                           f"year={partition.year}/month={partition.month_number}/day={day}/symbol={symbol}")
                iceberg.mkdir(parents=True)
                con.execute(f"COPY (SELECT *, {partition.year}::INTEGER AS year, {partition.month_number}::INTEGER "
                            f"AS month, {day}::INTEGER AS day, '{symbol}' AS symbol FROM trades WHERE {where} "
                            f"ORDER BY trade_id) TO '{iceberg / 'part-00000.parquet'}' (FORMAT parquet)")
                files.append(f"file://{iceberg / 'part-00000.parquet'}")
            if table is None:
                import pyarrow.parquet as pq

                table = catalog.create_table("market_data.trades_binance", schema=pq.read_schema(files[0][7:]))
                with table.update_spec() as spec:
                    for field in ("year", "month", "day", "symbol"):
                        spec.add_identity(field)
                table = catalog.load_table("market_data.trades_binance")
            table.add_files(files)
    con.close()
    engine.refresh_views(catalog)  # the DuckDB views over the table's current snapshot, as after a publish


def time_command(args: list[str], lake: Path, runs: int) -> dict[str, float]:
    env = {**os.environ, "MARKET_ETL_RUNTIME": "local", "MARKET_ETL_LAKE": str(lake)}
    script = os.path.join(os.path.dirname(sys.executable), "market-etl")
    walls, engines, cpus = [], [], []
    for _ in range(runs + 1):  # the first run warms the page cache and .pyc files; not counted
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=120)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if done.returncode != 0:
            raise RuntimeError(f"market-etl {' '.join(args)} failed: {done.stderr}")
        walls.append(wall)
        engines.append(float(ENGINE_SECONDS.search(done.stderr).group(1)))
    walls, engines, cpus = walls[1:], engines[1:], cpus[1:]
    median = statistics.median(walls)
    return {"median": median, "best": min(walls), "engine": statistics.median(engines), "cpu": statistics.median(cpus),
            "before_engine_share": (median - statistics.median(engines)) / median}


def time_api(lake: Path, start: str, end: str, runs: int) -> dict[str, float]:
    from market_etl.read import open_catalog, trades
    from market_etl.settings import Settings

    settings = Settings.from_env({"MARKET_ETL_LAKE": str(lake)})
    seconds, rows = [], 0
    for _ in range(runs + 1):
        started = time.perf_counter()
        rows = trades("BTCUSDT", start, end, catalog=open_catalog(settings)).num_rows
        seconds.append(time.perf_counter() - started)
    return {"median": statistics.median(seconds[1:]), "best": min(seconds[1:]), "rows": rows}


def render(commands: dict[str, dict], api: dict[str, dict], runs: int, trades_per_day: int) -> str:
    load = os.getloadavg()
    lines = [BEGIN, "## Query command and read API (`market-etl bench query`)", "",
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; demo-sized local lake: {len(SYMBOLS)} symbols x "
             f"{len(MONTHS)} months x {trades_per_day:,} trades a day; {runs} runs each after one warm-up; "
             f"load average {load[0]:.2f} at the end (wall times on a loaded machine are longer).", "",
             "| command (a fresh process) | wall median s | best s | CPU s | engine s | before the engine | target |",
             "|---|---|---|---|---|---|---|"]
    for name, r in commands.items():
        verdict = "met" if r["median"] <= TARGET_SECONDS else "not met"
        lines.append(f"| `market-etl query` {name} | {r['median']:.3f} | {r['best']:.3f} | {r['cpu']:.3f} | "
                     f"{r['engine']:.3f} | "
                     f"{r['before_engine_share']:.0%} | <= {TARGET_SECONDS} s: {verdict} |")
    lines += ["", "| `market_etl.read.trades` (in a running process) | rows | median s | best s |", "|---|---|---|---|"]
    for name, r in api.items():
        lines.append(f"| {name} | {r['rows']:,} | {r['median']:.3f} | {r['best']:.3f} |")
    return "\n".join(lines + [END]) + "\n"


def write_section(output: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the text between `begin` and `end` (markers `section` starts and ends with) in `output`, or
    append `section`; the rest of the file is kept."""
    text = output.read_text() if output.is_file() else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end) + 1:]
    else:
        text = text + ("\n" if text and not text.endswith("\n\n") else "") + section
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)


def bench_query(workdir: str | os.PathLike = "benchmarks/work", output: str | os.PathLike = "benchmarks/results.md",
                runs: int = 5, trades_per_day: int = TRADES_PER_DAY) -> str:
    lake = (Path(workdir) / "query-lake").resolve()  # the catalog names its warehouse by a file URI
    print(f"bench query: building the demo-sized lake in {lake} ...", flush=True)
    build_lake(lake, trades_per_day)
    commands = {name: time_command(args, lake, runs) for name, args in COMMANDS.items()}
    api = {"one symbol-day (BTCUSDT 2025-07-15)": time_api(lake, "2025-07-15", "2025-07-15", runs),
           "one symbol-month (BTCUSDT 2025-07)": time_api(lake, "2025-07-01", "2025-07-31", runs)}
    section = render(commands, api, runs, trades_per_day)
    write_section(Path(output), section)
    shutil.rmtree(lake, ignore_errors=True)
    print(section + f"bench query: wrote {output}", flush=True)
    return section


def register(sub: argparse._SubParsersAction) -> None:
    """`market-etl bench query` (sub is the `bench` command's subparsers)."""
    parser = sub.add_parser("query", help="the query command's wall time and the read API's load times on a "
                                          "demo-sized lake, as a section of benchmarks/results.md")
    parser.add_argument("--workdir", default="benchmarks/work", help="where the lake is built (and removed)")
    parser.add_argument("--output", default="benchmarks/results.md", help="the results file to add the section to")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each measurement (after one warm-up)")
    parser.add_argument("--trades-per-day", type=int, default=TRADES_PER_DAY,
                        help=f"trades per symbol-day in the generated lake (default {TRADES_PER_DAY:,}: the demo's)")
    parser.set_defaults(func=lambda args: bench_query(args.workdir, args.output, args.runs, args.trades_per_day) and 0)
