"""What every stage entry point shares: argument parsing and opening Pipes.

Stage scripts import `dagster_pipes`, never `dagster`, so the same file runs as
a local subprocess and as a Glue job. On Glue, Dagster passes the Pipes
bootstrap as `--dagster-pipes-*` job arguments and context and messages travel
through S3 (Glue's CloudWatch stream drops lines; check results must arrive).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from dagster_pipes import PipesContext, open_dagster_pipes

from market_etl.core.keys import TradePartition


def stage_parser(description: str) -> argparse.ArgumentParser:
    # No abbreviations: an unknown Glue argument must never be taken for a prefix of one of ours.
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--lake", required=True, help="lake root: a directory or s3://bucket/prefix")
    parser.add_argument("--s3-endpoint-url", default=None)
    parser.add_argument("--aws-region", default=None)
    return parser


def _bool_value(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value == "true"


def flag_argument(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    """A boolean flag that reads `--name` (local) and `--name true|false` (Glue passes every argument with a value)."""
    parser.add_argument(name, nargs="?", const=True, default=False, type=_bool_value, help=help)


def parse_stage_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None):
    # Glue adds its own arguments (--JOB_ID, --dagster-pipes-*, ...): ignore what is not ours.
    args, _unknown = parser.parse_known_args(argv)
    args.partition = TradePartition(args.symbol, args.month)
    return args


def open_stage_pipes(argv: Sequence[str] | None = None):
    """Pipes over env vars (local subprocess), or over S3 when Glue passes `--dagster-pipes-context`.

    The Glue branch matches `GlueStageLauncher`: `PipesS3ContextInjector` + `PipesS3MessageReader`
    on the Dagster side. Its S3 client takes the endpoint from AWS's standard settings
    (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, honoured by boto3), unset on real Glue.
    """
    argv = sys.argv[1:] if argv is None else argv
    if "--dagster-pipes-context" in argv:
        import boto3
        from dagster_pipes import PipesCliArgsParamsLoader, PipesS3ContextLoader, PipesS3MessageWriter

        s3 = boto3.client("s3")
        return open_dagster_pipes(
            context_loader=PipesS3ContextLoader(client=s3),
            message_writer=PipesS3MessageWriter(client=s3),
            params_loader=PipesCliArgsParamsLoader(),
        )
    return open_dagster_pipes()


__all__ = ["PipesContext", "flag_argument", "open_stage_pipes", "parse_stage_args", "stage_parser"]
