"""`market-etl`: the project's command line (query, table, init-home; mirror, bench and demo from the tooling package)."""
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


#: Subcommands that live in the tooling package (market_etl_devtools), not in what ships to Glue.
DEVTOOLS_COMMANDS = ("mirror", "bench", "demo")


def build_parser() -> argparse.ArgumentParser:
    from market_etl import query_cli, table_cli

    parser = argparse.ArgumentParser(prog="market-etl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    query_cli.register(sub)
    table_cli.register(sub)

    home = sub.add_parser("init-home", help="create $DAGSTER_HOME from the shipped dagster.yaml and set pool limits")
    home.set_defaults(func=_init_home)

    try:
        from market_etl_devtools.cli import register as register_devtools
    except ImportError:
        for name in DEVTOOLS_COMMANDS:
            missing = sub.add_parser(name, help="(needs market-etl-devtools: `make setup` or `pip install -e devtools`)")
            missing.set_defaults(func=_devtools_missing)
    else:
        register_devtools(sub)
    return parser


def _devtools_missing(args) -> int:
    print(f"market-etl {args.command}: this command is part of the development tools, which are not installed "
          "here. From a checkout run `make setup`, or `pip install -e devtools`.", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    # Dagster flags its own preview internals on every Pipes run; users can do nothing about them.
    warnings.filterwarnings("ignore", message=".*is currently in preview.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="dagster")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
