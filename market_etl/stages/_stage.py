"""What every stage entry point shares: argument parsing and opening Pipes.

Stage scripts import `dagster_pipes`, never `dagster`, so the same file runs as
a local subprocess and as a Glue job. On Glue, Dagster passes the Pipes
bootstrap as `--dagster-pipes-*` job arguments and context and messages travel
through S3 (Glue's CloudWatch stream drops lines; check results must arrive).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from contextlib import contextmanager
from typing import Iterator, Sequence

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


def abort_writes_on_sigterm() -> None:
    """Dagster (a cancelled run) and Glue (a timeout) stop a stage with SIGTERM: turn it into SystemExit, so the
    open write unwinds and aborts its multipart upload or removes its temporary file (the default action would
    end the process on the spot and leave the upload to the bucket's lifecycle rule)."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def parse_stage_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None):
    # Glue adds its own arguments (--JOB_ID, --dagster-pipes-*, ...): ignore what is not ours.
    args, _unknown = parser.parse_known_args(argv)
    args.partition = TradePartition(args.symbol, args.month)
    return args


#: The stage's last log line before it exits with an error starts with this: the launcher finds the stage's
#: own reason there and puts it in the step failure (market_etl/resources/stages.py).
STAGE_ERROR_PREFIX = "stage failed: "


class PipesLogHandler(logging.Handler):
    """Forwards the `market_etl` loggers' records (core modules log retries, skips, ...) to Dagster through Pipes,
    so they reach the run's logs in the Dagster UI, from a subprocess as from a Glue job."""

    def __init__(self, pipes: PipesContext) -> None:
        super().__init__(level=logging.INFO)
        self.pipes = pipes

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = "warning" if record.levelno == logging.WARNING else record.levelname.lower()
            getattr(self.pipes.log, level, self.pipes.log.info)(f"{record.name}: {record.getMessage()}")
        except Exception:  # a log line must never fail the stage
            self.handleError(record)


@contextmanager
def open_stage_pipes(argv: Sequence[str] | None = None) -> Iterator[PipesContext]:
    """Pipes for one stage run: the stage's logs go to Dagster, and an error's own message is logged before it
    propagates (the stage then exits non-zero), so the step failure can say why."""
    with _open_pipes(argv) as pipes:
        logger = logging.getLogger("market_etl")
        handler = PipesLogHandler(pipes)
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        try:
            yield pipes
        except Exception as err:
            pipes.log.error(f"{STAGE_ERROR_PREFIX}{type(err).__name__}: {err}")
            raise
        finally:
            logger.removeHandler(handler)


def _open_pipes(argv: Sequence[str] | None = None):
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


__all__ = ["STAGE_ERROR_PREFIX", "PipesContext", "abort_writes_on_sigterm", "flag_argument", "open_stage_pipes", "parse_stage_args", "stage_parser"]
