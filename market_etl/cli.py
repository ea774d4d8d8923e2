"""`market-etl`: the project's command line (mirror, query, demo, init-home)."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings


def _init_home(args) -> int:
    from market_etl.instance import get_instance
    from market_etl.settings import Settings

    instance = get_instance(Settings.from_env())
    print(f"DAGSTER_HOME ready: {instance.root_directory}")
    return 0


def _demo(args) -> int:
    from market_etl.demo import run_demo

    return run_demo(trades_per_day=args.trades_per_day, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    from market_etl import query_cli
    from market_etl import bench as bench_cli
    from market_etl import bench_etl, bench_pipeline
    from market_etl.mirror import cli as mirror_cli

    parser = argparse.ArgumentParser(prog="market-etl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    mirror_cli.register(sub)
    query_cli.register(sub)

    demo = sub.add_parser("demo", help="run the pipeline end to end on a generated local mirror")
    demo.add_argument("--trades-per-day", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_demo)

    home = sub.add_parser("init-home", help="create $DAGSTER_HOME from the shipped dagster.yaml and set pool limits")
    home.set_defaults(func=_init_home)

    bench = sub.add_parser("bench", help="benchmarks: `pipeline` (the default: every stage, written to "
                                         "benchmarks/results.md), `unzip` and `etl` in detail")
    benchmarks = bench.add_subparsers(dest="benchmark")
    bench_pipeline.register(benchmarks)
    bench_cli.register(benchmarks)
    bench_etl.register(benchmarks)
    bench.set_defaults(func=lambda args: _bench_default(benchmarks))
    return parser


def _bench_default(benchmarks: argparse._SubParsersAction) -> int:
    """`market-etl bench` with no name: the whole-pipeline benchmark with its defaults."""
    args = benchmarks.choices["pipeline"].parse_args([])
    return args.func(args)


def main(argv=None) -> int:
    # Dagster flags its own preview internals on every Pipes run; users can do nothing about them.
    warnings.filterwarnings("ignore", message=".*is currently in preview.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="dagster")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
