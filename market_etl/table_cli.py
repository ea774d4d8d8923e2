"""`market-etl table`: the history of an Iceberg table, and rolling it back.

    market-etl table history trades_binance [--symbol BTCUSDT --month 2025-07] [--format json]
    market-etl table rollback trades_binance --to SNAPSHOT_ID

history lists the table's snapshots, oldest first: time, status (current, published, rolled back, staged-not-published),
operation, run id, Dagster run id, partition, rows and files added and removed, source sha256. With
--symbol and --month it also lists that partition's staged versions that were never published (the
manifests processed/trades wrote; for example a version whose blocking checks failed, with the checks).
rollback makes an earlier snapshot (an ancestor of the current one) current again; readers see it at once.
"""
from __future__ import annotations

import argparse
import json
import sys


def _open(args):
    from market_etl.core.tables import table_spec
    from market_etl.lake.iceberg import load_table
    from market_etl.resources import build_resources
    from market_etl.settings import Settings

    settings = Settings.from_env()
    resources = build_resources(settings)
    catalog_resource = resources["catalog"]
    catalog, lake = catalog_resource.catalog(), catalog_resource.lake()
    return resources["sql"], catalog, lake, load_table(catalog, lake, table_spec(args.table))


def staged_not_published(lake, partition, published_runs: set[str]) -> list[dict]:
    """The partition's staged manifests whose run never reached the table."""
    from market_etl.core.staged import StagedVersion

    prefix = f"processed/_staged/trades/symbol={partition.symbol}/month={partition.month}/"
    entries = []
    for obj in lake.list(prefix):
        if not obj.key.endswith(".json"):
            continue
        version = StagedVersion.from_json(lake.get_bytes(obj.key))
        if version.run_id in published_runs:
            continue
        failed = version.failed_blocking_checks
        entries.append({"snapshot_id": None, "time": version.created_at, "operation": "staged",
                        "status": "staged-not-published", "run_id": version.run_id,
                        "dagster_run_id": version.dagster_run_id, "partition": str(partition),
                        "rows_added": 0, "rows_removed": 0, "files_added": 0, "files_removed": 0,
                        "source_sha256": version.source_sha256,
                        "note": f"blocking checks failed: {', '.join(failed)}" if failed else
                                f"{version.rows_written} rows in {len(version.trades_files)} files, checks passed"})
    return entries


def history_rows(table, lake, spec_name: str, partition=None) -> list[dict]:
    from market_etl.core.tables import TRADES
    from market_etl.lake.iceberg import history

    rows = [e.as_dict() for e in history(table, partition)]
    if partition is not None and spec_name == TRADES.name:
        rows += staged_not_published(lake, partition, {r["run_id"] for r in rows if r["run_id"]})
        rows.sort(key=lambda r: r["time"])
    return rows


def _history(args) -> int:
    from market_etl.core.keys import TradePartition

    if bool(args.symbol) != bool(args.month):
        raise ValueError("give --symbol and --month together (or neither)")
    _, _, lake, table = _open(args)
    partition = TradePartition(args.symbol, args.month) if args.symbol else None
    rows = history_rows(table, lake, args.table.split(".")[-1], partition)
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    columns = ("time", "status", "operation", "snapshot_id", "run_id", "partition", "rows_added", "rows_removed",
               "files_added", "files_removed", "source_sha256", "dagster_run_id", "note")
    from market_etl.core.sql import QueryResult
    from market_etl.query_cli import format_table

    result = QueryResult(columns=columns, rows=[tuple(r.get(c) for c in columns) for r in rows], seconds=0,
                         engine="iceberg")
    sys.stdout.write(format_table(result) + "\n")
    return 0


def _rollback(args) -> int:
    from market_etl.lake.iceberg import rollback

    sql, catalog, _, table = _open(args)
    previous = rollback(table, args.to)
    sql.refresh_views(catalog)
    print(f"{table.name()}: current snapshot is now {args.to} (was {previous}); market-etl table history "
          f"{args.table} lists every snapshot")
    return 0


def run_table_command(args) -> int:
    from market_etl.core.keys import InvalidPartitionKey
    from market_etl.core.tables import UnknownTable
    from market_etl.lake.iceberg import CatalogError

    try:
        return args.table_func(args)
    except (CatalogError, UnknownTable, InvalidPartitionKey, ValueError) as error:
        sys.stderr.write(f"market-etl table: {error}\n")
        return 2


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("table", help="history and rollback of the lake's Iceberg tables",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True)
    history = actions.add_parser("history", help="list a table's snapshots (and a partition's unpublished versions)")
    history.add_argument("table", help="e.g. trades_binance, trades_rejected, ohlcv_1m, daily_trade_stats")
    history.add_argument("--symbol")
    history.add_argument("--month", help="YYYY-MM")
    history.add_argument("--format", choices=("table", "json"), default="table")
    history.set_defaults(func=run_table_command, table_func=_history)
    back = actions.add_parser("rollback", help="make an earlier snapshot current again")
    back.add_argument("table")
    back.add_argument("--to", type=int, required=True, metavar="SNAPSHOT_ID")
    back.set_defaults(func=run_table_command, table_func=_rollback)
