"""The tooling's `market-etl` subcommands: mirror, bench, demo, dev (registered by `market_etl.cli` when installed)."""
from __future__ import annotations

import argparse

from market_etl.cli import DEVTOOLS_COMMANDS


def _demo(args) -> int:
    from market_etl_devtools.demo import run_demo

    return run_demo(trades_per_day=args.trades_per_day, seed=args.seed)


def _dev(args) -> int:
    from market_etl_devtools.dev import run_dev

    return run_dev(real_archive=args.real_archive, host=args.host, port=args.port)


def register(sub: argparse._SubParsersAction) -> None:
    from market_etl_devtools import bench_catalog, bench_etl, bench_pipeline, bench_query, bench_unzip
    from market_etl_devtools.mirror import cli as mirror_cli

    mirror_cli.register(sub)

    demo = sub.add_parser("demo", help=DEVTOOLS_COMMANDS["demo"])
    demo.add_argument("--trades-per-day", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_demo)

    dev = sub.add_parser("dev", help=DEVTOOLS_COMMANDS["dev"])
    dev.add_argument("--real-archive", action="store_true",
                     help="ignore data/demo.env: Binance's real archive (BINANCE_BASE_URL or its default)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=_dev)

    bench = sub.add_parser("bench", help=DEVTOOLS_COMMANDS["bench"])
    benchmarks = bench.add_subparsers(dest="benchmark")
    bench_pipeline.register(benchmarks)
    bench_unzip.register(benchmarks)
    bench_etl.register(benchmarks)
    bench_catalog.register(benchmarks)
    bench_query.register(benchmarks)
    bench.set_defaults(func=lambda args: _bench_default(benchmarks))


def _bench_default(benchmarks: argparse._SubParsersAction) -> int:
    """`market-etl bench` with no name: the whole-pipeline benchmark with its defaults."""
    args = benchmarks.choices["pipeline"].parse_args([])
    return args.func(args)
