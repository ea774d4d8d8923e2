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
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--lake", required=True, help="lake root: a directory or s3://bucket/prefix")
    parser.add_argument("--s3-endpoint-url", default=None)
    parser.add_argument("--aws-region", default=None)
    return parser


def parse_stage_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None):
    # Glue adds its own arguments (--JOB_ID, --dagster-pipes-*, ...): ignore what is not ours.
    args, _unknown = parser.parse_known_args(argv)
    args.partition = TradePartition(args.symbol, args.month)
    return args


def open_stage_pipes(argv: Sequence[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    if any(a.startswith("--dagster-pipes-context") for a in argv):
        import boto3
        from dagster_pipes import PipesCliArgsParamsLoader, PipesS3ContextLoader, PipesS3MessageWriter

        s3 = boto3.client("s3")
        return open_dagster_pipes(
            context_loader=PipesS3ContextLoader(client=s3),
            message_writer=PipesS3MessageWriter(client=s3),
            params_loader=PipesCliArgsParamsLoader(),
        )
    return open_dagster_pipes()


__all__ = ["PipesContext", "open_stage_pipes", "parse_stage_args", "stage_parser"]
