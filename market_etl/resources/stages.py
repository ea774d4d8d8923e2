"""Stage launchers: run a stage entry point for one partition, through Dagster Pipes.

Both launchers take the same call; asset bodies never know which one they got:
`LocalStageLauncher` (subprocess) for the local runtime, `GlueStageLauncher` for aws.
"""

import fcntl
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import boto3
import dagster as dg
from dagster import PipesSubprocessClient
from dagster_aws.pipes import PipesGlueClient, PipesS3ContextInjector, PipesS3MessageReader
from dagster_pipes import PipesParams

from market_etl.core import defaults
from market_etl.core.keys import TradePartition
from market_etl.stages._stage import STAGE_ERROR_PREFIX

STAGES = ("download", "unzip", "etl")


def stage_module(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    return f"market_etl.stages.{stage}"


def partition_args(partition: TradePartition) -> list[str]:
    return ["--symbol", partition.symbol, "--month", partition.month]


class StageLauncher(dg.ConfigurableResource):
    """Runs a stage for one partition and returns the Pipes invocation (results, checks, logs)."""

    # Whether an asset may find its stage's input unchanged itself and skip launching it: locally the lake is
    # the orchestrator's own; on AWS the orchestrator's role does not read the raw zones, the stage decides.
    checks_up_to_date_in_process: bool = False

    def run(self, context: dg.AssetExecutionContext, stage: str, args: Sequence[str]):
        raise NotImplementedError


class LocalStageLauncher(StageLauncher):
    """Runs stages as local subprocesses of this Python (`python -m market_etl.stages.<stage>`)."""

    python_executable: str = sys.executable
    checks_up_to_date_in_process: bool = True

    def run(self, context: dg.AssetExecutionContext, stage: str, args: Sequence[str]):
        command = [self.python_executable, "-m", stage_module(stage), *args]
        with host_pool_slot(context):
            context.log.info(f"stage {stage}: {' '.join(command)}")
            with stage_errors(context, stage):
                return PipesSubprocessClient().run(context=context, command=command)


#: How often a stage waiting for a host slot tries again.
HOST_SLOT_POLL_SECONDS = 0.2


@contextmanager
def host_pool_slot(context: dg.AssetExecutionContext) -> Iterator[None]:
    """Holds one of the step's pool slots on this machine (a file lock) while its stage runs.

    Dagster's pool already queues the step, but on the local instance's SQLite storage two processes can
    claim the same slot row (no row locks: the claim is a read, then an update), so under load a third
    download could start next to two others. A lock per slot under the instance's directory makes the limit
    exact on one machine. The step's process holds it, so the operating system releases it when that process
    dies and nothing goes stale; a stage that outlives its step (a cancelled run whose stage ignores the stop
    past Dagster's grace period) runs on outside the count until it ends."""
    pool = context.op_def.pool
    storage = context.instance.event_log_storage
    if not pool or not storage.supports_global_concurrency_limits:
        yield
        return
    limit = storage.get_concurrency_info(pool).slot_count
    if limit <= 0:
        yield
        return
    folder = Path(context.instance.root_directory) / "pool-slots" / pool
    folder.mkdir(parents=True, exist_ok=True)
    waiting_since = None
    while True:
        for slot in range(limit):
            with open(folder / f"{slot}.lock", "a") as handle:  # closing the file releases the lock
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                waited = "" if waiting_since is None else f" after waiting {time.monotonic() - waiting_since:.1f} s"
                context.log.info(f"pool {pool}: host slot {slot} taken{waited}")
                try:
                    yield
                finally:
                    context.log.info(f"pool {pool}: host slot {slot} released")
                return
        if waiting_since is None:
            waiting_since = time.monotonic()
            context.log.info(f"pool {pool}: all {limit} host slots busy; waiting")
        time.sleep(HOST_SLOT_POLL_SECONDS)


@contextmanager
def stage_errors(context: dg.AssetExecutionContext, stage: str) -> Iterator[None]:
    """A failed stage fails the step with the stage's own error message, not the client's generic one.

    The Pipes clients raise "process failed with code N" (subprocess) or "Glue job ... completed with status
    FAILED" (Glue, whose ErrorMessage is not the script's exception); the stage logged its reason through
    Pipes just before exiting (`market_etl.stages._stage.open_stage_pipes`), and that log line is in the run's
    event log by the time the client raises (the Pipes session reads every message before it closes).
    """
    started = time.time()
    try:
        yield
    except Exception as err:
        reason = stage_error_message(context, since=started)
        if reason is None:
            raise
        # The stage ran and gave its verdict (not published, checksum mismatch, a bad archive, failed checks):
        # its own HTTP and S3 calls already retried with backoff, so a step retry would only repeat the verdict.
        # Failures without one (a Glue capacity or internal error, a killed process) keep the RetryPolicy.
        raise dg.Failure(description=f"stage '{stage}' failed: {reason}", allow_retries=False,
                         metadata={"stage": stage, "client_error": str(err)[:2000]}) from err


def stage_error_message(context: dg.AssetExecutionContext, since: float) -> str | None:
    """The error message this step's stage logged through Pipes after `since`, if any."""
    for record in reversed(context.instance.all_logs(context.run.run_id)):
        if record.timestamp < since:
            break  # a run's steps are sequential (in-process executor): older lines belong to earlier steps
        message = record.user_message or ""
        if message.startswith(STAGE_ERROR_PREFIX):
            return message[len(STAGE_ERROR_PREFIX):].strip()
    return None


def glue_job_names(prefix: str = defaults.GLUE_JOB_PREFIX) -> dict[str, str]:
    """The Glue job of each stage: `<prefix><stage>` (terraform/glue_jobs.tf creates `market-etl-*`)."""
    return {stage: f"{prefix}{stage}" for stage in STAGES}


def glue_arguments(args: Sequence[str]) -> dict[str, str]:
    """Our stage argument list as Glue's `Arguments` map: `["--k", "v", "--flag"]` -> `{"--k": "v", "--flag": "true"}`.

    Glue passes every argument as `--name value`, so a bare flag needs a value; the stage
    parsers read `--flag true` as the flag (see `market_etl.stages._stage.flag_argument`).
    """
    arguments: dict[str, str] = {}
    i = 0
    while i < len(args):
        name = args[i]
        if not name.startswith("--"):
            raise ValueError(f"stage argument {name!r} is not a --name: cannot pass {list(args)} to Glue")
        if name in arguments:
            raise ValueError(f"stage argument {name} given twice: Glue arguments are a map")
        has_value = i + 1 < len(args) and not args[i + 1].startswith("--")
        arguments[name] = args[i + 1] if has_value else "true"
        i += 2 if has_value else 1
    return arguments


class PipesS3MessageReaderUnderPrefix(PipesS3MessageReader):
    """`PipesS3MessageReader`, with its message chunks under a key prefix.

    dagster-aws 0.29 writes message chunks at the bucket root (`<random>/<n>.json`);
    the Glue roles may only write under `pipes/`, where a lifecycle rule expires them.
    """

    def __init__(self, *, key_prefix: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.key_prefix = key_prefix

    @contextmanager
    def get_params(self) -> Iterator[PipesParams]:
        with super().get_params() as params:
            yield {**params, "key_prefix": f"{self.key_prefix}{params['key_prefix']}"}


class GlueStageLauncher(StageLauncher):
    """Runs stages as AWS Glue jobs (the same `market_etl/stages/<stage>.py` files) through `PipesGlueClient`.

    Pipes context and messages travel through S3 under `pipes_bucket/pipes_prefix`: Glue's
    CloudWatch output stream has been measured to drop lines, and check results must arrive.
    """

    job_names: dict[str, str] = glue_job_names()
    pipes_bucket: str
    pipes_prefix: str = "pipes/"
    region: str | None = None
    s3_endpoint_url: str | None = None
    message_poll_seconds: float = 10.0

    def glue_client(self):
        """The Glue API client that starts and polls job runs (tests substitute a local stand-in)."""
        return boto3.client("glue", region_name=self.region)

    def s3_client(self):
        return boto3.client("s3", region_name=self.region, endpoint_url=self.s3_endpoint_url)

    def pipes_client(self) -> PipesGlueClient:
        s3 = self.s3_client()
        return PipesGlueClient(
            client=self.glue_client(),
            context_injector=PipesS3ContextInjector(bucket=self.pipes_bucket, client=s3,
                                                    key_prefix=self.pipes_prefix),
            message_reader=PipesS3MessageReaderUnderPrefix(
                bucket=self.pipes_bucket, client=s3, key_prefix=self.pipes_prefix,
                interval=self.message_poll_seconds,
            ),
        )

    def run(self, context: dg.AssetExecutionContext, stage: str, args: Sequence[str]):
        stage_module(stage)  # validates the stage name
        job_name = self.job_names[stage]
        arguments = glue_arguments(args)
        context.log.info(f"stage {stage}: Glue job {job_name} {arguments}")
        with stage_errors(context, stage):
            return self.pipes_client().run(
                context=context, start_job_run_params={"JobName": job_name, "Arguments": arguments},
            )
