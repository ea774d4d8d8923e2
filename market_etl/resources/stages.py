"""Stage launchers: run a stage entry point for one partition, through Dagster Pipes.

Both launchers take the same call; asset bodies never know which one they got.
"""

import sys
from typing import Sequence

import dagster as dg
from dagster import PipesSubprocessClient

from market_etl.core.keys import TradePartition

STAGES = ("download", "unzip", "etl")


def stage_module(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    return f"market_etl.jobs.{stage}"


def partition_args(partition: TradePartition) -> list[str]:
    return ["--symbol", partition.symbol, "--month", partition.month]


class StageLauncher(dg.ConfigurableResource):
    """Runs a stage for one partition and returns the Pipes invocation (results, checks, logs)."""

    def run(self, context: dg.AssetExecutionContext, stage: str, args: Sequence[str]):
        raise NotImplementedError


class LocalStageLauncher(StageLauncher):
    """Runs stages as local subprocesses of this Python (`python -m market_etl.jobs.<stage>`)."""

    python_executable: str = sys.executable

    def run(self, context: dg.AssetExecutionContext, stage: str, args: Sequence[str]):
        command = [self.python_executable, "-m", stage_module(stage), *args]
        context.log.info(f"stage {stage}: {' '.join(command)}")
        return PipesSubprocessClient().run(context=context, command=command)
