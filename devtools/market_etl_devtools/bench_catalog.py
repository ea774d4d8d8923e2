"""`market-etl bench catalog`: query planning on the trades table as it grows to >= 1,000 symbol-months.

Metadata is generated cheaply: one tiny data file per symbol-month (a single row with the table's columns,
day 1), committed one symbol-month per transaction through the same `replace_partition` the publish step
uses, so the table has the snapshots and manifests a real history of per-partition publishes has. At each
checkpoint it times (best of 5) the planning of `vwap_1m`'s filter (one symbol-day) and of the whole table
(`trades_by_symbol` reads every file), and the commit itself. Planning time is what pyiceberg spends reading
the manifest list and the manifests; data files are never opened.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path

CHECKPOINTS = (100, 300, 1000)


def _symbol(i: int) -> str:
    return f"S{i:04d}USDT"


def _write_file(root: Path, partition, run: str) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from market_etl.core.keys import staged_trades_file_key

    key = staged_trades_file_key(partition, 1, run)
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    moment = dt.datetime(partition.year, partition.month_number, 1, tzinfo=dt.timezone.utc)
    table = pa.table({
        "trade_id": pa.array([1], pa.int64()), "price": pa.array([Decimal("1.5")], pa.decimal128(18, 8)),
        "quantity": pa.array([Decimal("2")], pa.decimal128(28, 8)),
        "quote_qty": pa.array([Decimal("3")], pa.decimal128(28, 8)),
        "trade_time": pa.array([moment], pa.timestamp("us", tz="UTC")),
        "is_buyer_maker": pa.array([True]), "is_best_match": pa.array([True]),
        "year": pa.array([partition.year], pa.int32()), "month": pa.array([partition.month_number], pa.int32()),
        "day": pa.array([1], pa.int32()), "symbol": pa.array([partition.symbol]),
    })
    pq.write_table(table, path, compression="snappy")
    return key


def _best(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def run(symbol_months: int, months_per_symbol: int = 10) -> list[dict]:
    from pyiceberg.expressions import And, EqualTo

    from market_etl.core.keys import TradePartition, new_run_id
    from market_etl.core.tables import TRADES
    from market_etl.lake import LocalLake
    from market_etl.lake.iceberg import load_table, open_catalog, replace_partition

    root = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    try:
        lake = LocalLake(root)
        catalog = open_catalog(lake)
        table = load_table(catalog, lake, TRADES)
        months = [f"{2024 + m // 12}-{m % 12 + 1:02d}" for m in range(months_per_symbol)]
        checkpoints = sorted({c for c in CHECKPOINTS if c <= symbol_months} | {symbol_months})
        results, commit_seconds = [], []
        for n in range(1, symbol_months + 1):
            partition = TradePartition(_symbol((n - 1) // months_per_symbol), months[(n - 1) % months_per_symbol])
            run_id = new_run_id()
            key = _write_file(root, partition, run_id)
            started = time.perf_counter()
            replace_partition(catalog, lake, TRADES, partition, [key], {}, run_id=run_id)
            commit_seconds.append(time.perf_counter() - started)
            if n in checkpoints:
                table = load_table(catalog, lake, TRADES)
                one_day = And(EqualTo("year", 2024), EqualTo("month", 1), EqualTo("day", 1),
                              EqualTo("symbol", _symbol(0)))
                files_one = len(list(table.scan(row_filter=one_day).plan_files()))
                results.append({
                    "symbol_months": n, "snapshots": len(table.snapshots()),
                    "plan_one_day_s": _best(lambda: list(table.scan(row_filter=one_day).plan_files())),
                    "plan_whole_table_s": _best(lambda: list(table.scan().plan_files())),
                    "files_planned_one_day": files_one,
                    "commit_s_last_10": sum(commit_seconds[-10:]) / len(commit_seconds[-10:]),
                })
                print(f"bench catalog: {results[-1]}", flush=True)
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _main(args) -> int:
    results = run(args.symbol_months)
    lines = ["| symbol-months | snapshots | plan one symbol-day (s) | plan whole table (s) | files planned (one day) "
             "| commit (s, mean of last 10) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['symbol_months']:,} | {r['snapshots']:,} | {r['plan_one_day_s']:.3f} | "
              f"{r['plan_whole_table_s']:.3f} | {r['files_planned_one_day']} | {r['commit_s_last_10']:.3f} |"
              for r in results]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).write_text("# Iceberg catalog: planning and commit as the table grows\n\n"
                                     "Written by `market-etl bench catalog` (devtools/market_etl_devtools/"
                                     "bench_catalog.py; its docstring says how).\n\n" + text)
    return 0


def register(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser("catalog", help="query planning and commit time on a trades table of "
                                                   ">= 1,000 symbol-months (generated metadata)")
    parser.add_argument("--symbol-months", type=int, default=1000)
    parser.add_argument("--output", default="benchmarks/catalog.md")
    parser.set_defaults(func=_main)
