"""`market-etl`: the project's command line (query, table, init-home; mirror, bench and demo from the tooling package)."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings


def _init_home(args) -> int:
    from market_etl.instance import get_instance
    from market_etl.settings import Settings

    instance = get_instance(Settings.from_env(), production=args.production)
    print(f"DAGSTER_HOME ready: {instance.root_directory}")
    return 0


#: Subcommands that live in the tooling package (market_etl_devtools), not in what ships to Glue, with the
#: help both the tooling's parsers and this module's placeholders show (the tooling loads only when run).
DEVTOOLS_COMMANDS = {
    "mirror": "generate or serve a local Binance-format archive mirror",
    "demo": "run the pipeline end to end on a generated local mirror",
    "dev": "dagster dev (what `make dev` runs): after `make demo`, on the demo's mirror and lake, served for as "
           "long as Dagster runs",
    "bench": "benchmarks: `pipeline` (the default: every stage, written to benchmarks/results.md), "
             "`query` (the query command and read API), `unzip` and `etl` in detail",
}
#: Loggers shown at INFO by default; everything else (third-party libraries) only from ERROR, unless -v.
OWN_LOGGERS = ("market_etl", "market_etl_devtools")


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the tooling's subcommands (and their imports) are loaded only when one of them is run,
    so `market-etl query` and `market-etl --help` import neither Dagster nor Spark."""
    from market_etl import query_cli, table_cli

    parser = argparse.ArgumentParser(prog="market-etl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the INFO logs of the libraries underneath (Dagster, botocore, ...)")
    sub = parser.add_subparsers(dest="command", required=True)
    query_cli.register(sub)
    table_cli.register(sub)

    home = sub.add_parser("init-home", help="create $DAGSTER_HOME from the shipped dagster.yaml and set pool limits")
    home.add_argument("--production", action="store_true",
                      help="a new $DAGSTER_HOME gets deploy/production/dagster.yaml (PostgreSQL, queued runs; "
                           "needs DAGSTER_POSTGRES_URL) instead of the local one")
    home.set_defaults(func=_init_home)

    if argv is not None and _command_of(argv) not in DEVTOOLS_COMMANDS:
        for name, help_text in DEVTOOLS_COMMANDS.items():
            sub.add_parser(name, help=help_text, add_help=False)
        return parser
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


def configure_logging(verbose: bool) -> None:
    """Our own INFO lines always; the libraries' (alembic's plugin setup, sqlglot's parser fallbacks, botocore)
    only with -v, or when they are errors."""
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Dagster flags its own preview internals on every Pipes run; users can do nothing about them.
    warnings.filterwarnings("ignore", message=".*is currently in preview.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="dagster")
    args = build_parser(argv).parse_args(argv)
    configure_logging(args.verbose)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
