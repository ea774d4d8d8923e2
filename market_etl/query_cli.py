"""`market-etl query`: run a named query from sql/, or ad-hoc Athena SQL, on the runtime's engine.

    market-etl query --list
    market-etl query trades_by_symbol
    market-etl query vwap_1m --symbol BTCUSDT --date 2025-07-15 --format csv
    market-etl query --sql "SELECT count(*) FROM market_data.trades_binance WHERE symbol = :symbol" --symbol ETHUSDT
    market-etl query trades_by_symbol --as-of 5525521406593445004

Locally the SQL runs on DuckDB over views of the Iceberg tables' current snapshots (read-only), on AWS
on Athena, which reads the Iceberg tables natively; --as-of SNAPSHOT|TIME reads the past. Ad-hoc SQL must be
one read statement (SELECT, WITH, VALUES, DESCRIBE, EXPLAIN): anything else is refused before any engine sees it.
Results go to stdout in the --format asked (or, with --output FILE, to FILE: .csv, .json or .parquet);
the cost line (time, files and bytes scanned) goes to stderr.

Exit codes: 0 ok, 2 usage error, 3 SQL rejected (does not parse, not a read statement, unknown table or
column), 4 no data (nothing published yet), 5 the engine failed.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from decimal import Decimal
from enum import IntEnum
from typing import Any, TextIO

from market_etl.lake.iceberg import CatalogError
from market_etl.core.keys import InvalidPartitionKey
from market_etl.core.sql import (
    QueryEngineFailed,
    QueryError,
    QueryResult,
    SqlRejected,
    bind,
    get_query,
    load_queries,
    parameters_for,
)
from market_etl.lake.query_engine import export_format, json_value

# The original design's three sample queries, which `make demo` prints at the end.
#: The original design's three sample queries, as designed (sql/athena_sample_queries.sql labels them).
DEMO_QUERIES = ("trades_by_symbol", "vwap_1m", "original_order_flow")


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


def format_table(result: QueryResult, max_rows: int | None = None) -> str:
    """An aligned text table; numbers right-aligned. Rows beyond `max_rows` are summarised in one line."""
    shown = result.rows if max_rows is None else result.rows[:max_rows]
    cells = [[_cell(v) for v in row] for row in shown]
    numeric = [bool(shown) and all(isinstance(row[i], (int, float, Decimal)) and not isinstance(row[i], bool)
                                   for row in shown if row[i] is not None) for i in range(len(result.columns))]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(result.columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    lines = [line(list(result.columns)), "  ".join("-" * w for w in widths)] + [line(row) for row in cells]
    if len(result.rows) > len(shown):
        lines.append(f"... {len(result.rows) - len(shown)} more rows")
    return "\n".join(lines)


def describe_cost(result: QueryResult) -> str:
    """`12 rows in 0.006 s on duckdb; scanned 2 of 12 files, 27.3 KB`: what the query cost."""
    parts = [f"{len(result.rows)} rows in {result.seconds:.3f} s on {result.engine}"]
    scanned = []
    if result.files_scanned is not None:
        scanned.append(f"{result.files_scanned} of {result.files_total} files")
    if result.bytes_scanned is not None:
        scanned.append(f"{result.bytes_scanned / 1000:,.1f} KB")
    if scanned:
        parts.append("scanned " + ", ".join(scanned))
    return "; ".join(parts)


def write_result(result: QueryResult, fmt: str, out: TextIO, max_rows: int | None = None) -> None:
    if fmt == "table":
        out.write(format_table(result, max_rows) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([[json_value(v) for v in row] for row in result.rows])
    elif fmt == "json":
        json.dump([{c: json_value(v) for c, v in zip(result.columns, row)} for row in result.rows], out, indent=1)
        out.write("\n")
    else:
        raise QueryError(f"unknown format {fmt!r}: expected table, csv or json")


def list_queries() -> str:
    lines = []
    for q in load_queries().values():
        params = " ".join(f":{p}" for p in q.parameters) or "(no parameters)"
        lines.append(f"{q.name}  [{q.source}]  {params}\n    {q.description}")
    return "\n".join(lines)


class ExitCode(IntEnum):
    """`market-etl query`'s exit status (README: "Exit codes")."""

    OK = 0
    USAGE = 2  # bad arguments or parameters, unknown query name (argparse's own errors exit 2 too)
    SQL_REJECTED = 3  # does not parse, not a single read statement, unknown table or column
    NO_DATA = 4  # nothing published: the lake has no catalog yet
    ENGINE_FAILED = 5  # the engine could not run a valid query (unreadable file, Athena's own failure)


def exit_code_for(error: Exception) -> ExitCode:
    from market_etl.lake.query_engine import CatalogNotFound

    if isinstance(error, CatalogNotFound):
        return ExitCode.NO_DATA
    if isinstance(error, SqlRejected):
        return ExitCode.SQL_REJECTED
    if isinstance(error, (QueryEngineFailed, CatalogError)):
        return ExitCode.ENGINE_FAILED
    return ExitCode.USAGE


def run_query_command(args: argparse.Namespace) -> int:
    from market_etl.lake.query_engine import build_query_engine
    from market_etl.settings import Settings

    out, err = sys.stdout, sys.stderr

    if args.list:
        out.write(list_queries() + "\n")
        return ExitCode.OK
    try:
        if bool(args.name) == bool(args.sql):
            raise QueryError("give a query NAME or --sql \"...\" (market-etl query --list shows the names)")
        if args.output:
            export_format(args.output)  # a bad extension is a usage error before any engine runs
        query = bind(get_query(args.name) if args.name else args.sql,
                     parameters_for(symbol=args.symbol, date=args.date, month=args.month))
        try:
            settings = Settings.from_env()
        except ValueError as error:
            raise QueryError(f"configuration: {error}") from error
        engine = build_query_engine(settings, as_of=args.as_of)
        if args.output:
            exported = engine.export(query, args.output)
            err.write(f"({exported.rows} rows written to {exported.path} as {exported.format}, "
                      f"{exported.bytes / 1000:,.1f} KB, in {exported.seconds:.3f} s on {exported.engine})\n")
            return ExitCode.OK
        result = engine.query(query)
    except (QueryError, InvalidPartitionKey, CatalogError) as error:
        err.write(f"market-etl query: {error}\n")
        return exit_code_for(error)
    write_result(result, args.format, out, args.max_rows)
    err.write(f"({describe_cost(result)})\n")
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "query", help="run a named query from sql/ (or --sql) on the local lake (DuckDB) or Athena",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", help="a query name from sql/athena_sample_queries.sql or "
                                                "sql/athena_analytics.sql (see --list)")
    parser.add_argument("--sql", help="ad-hoc SQL in Athena's dialect; may use :symbol :year :month :day")
    parser.add_argument("--list", action="store_true", help="list the named queries and their parameters")
    parser.add_argument("--symbol", help="binds :symbol, e.g. BTCUSDT")
    parser.add_argument("--date", help="YYYY-MM-DD: binds :year, :month and :day")
    parser.add_argument("--month", help="YYYY-MM: binds :year and :month")
    parser.add_argument("--as-of", metavar="SNAPSHOT|TIME",
                        help="read market_data.trades_binance as it was: a snapshot id (market-etl table history) "
                             "or an ISO time, e.g. 2025-08-01T12:00:00Z")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--max-rows", type=int, default=None, help="table format: show at most N rows")
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="also show the INFO logs of the libraries underneath")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write the result to FILE instead of stdout, streamed: .csv, .json (an array of "
                             "objects) or .parquet by extension")
    parser.set_defaults(func=run_query_command)


def show_demo_queries(engine, symbol: str, date: str, max_rows: int = 10) -> None:
    """Print the original design's three sample queries over the lake (the end of `make demo`)."""
    values = parameters_for(symbol=symbol, date=date)
    print(f"\nThe original design's sample queries ({symbol}, {date} where a query takes them); "
          f"more: market-etl query --list")
    try:
        for name in DEMO_QUERIES:
            query = get_query(name)
            result = engine.query(bind(query, {k: v for k, v in values.items() if k in query.parameters}))
            print(f"\n-- {name}: {query.description}\n{format_table(result, max_rows)}\n({describe_cost(result)})")
    except (QueryError, CatalogError) as error:
        print(f"queries: {error}")
