"""Pool limits by runtime: `market-etl init-home` sets what the runtime can take, on the instance Dagster enforces them with."""
import os
import subprocess
import sys

import dagster as dg
import pytest

from market_etl.definitions import build_definitions
from market_etl.defs.keys import DOWNLOAD_POOL, SPARK_POOL, UNZIP_POOL

from market_etl.instance import pool_limits
from market_etl.settings import Settings
from market_etl_tests.unit.test_terraform import _flat

AWS = {"MARKET_ETL_RUNTIME": "aws", "MARKET_ETL_LAKE": "s3://the-lake/", "AWS_REGION": "eu-west-1"}


def _init_home(home, env: dict[str, str]) -> dg.DagsterInstance:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MARKET_ETL_", "DAGSTER_"))}
    subprocess.run([sys.executable, "-m", "market_etl.cli", "init-home"], check=True, capture_output=True,
                   env={**clean, **env, "DAGSTER_HOME": str(home)})
    return dg.DagsterInstance.from_config(str(home))


def _slots(instance: dg.DagsterInstance) -> dict[str, int]:
    return {pool: instance.event_log_storage.get_concurrency_info(pool).slot_count
            for pool in (DOWNLOAD_POOL, UNZIP_POOL, SPARK_POOL)}


@pytest.mark.parametrize(("env", "expected"), [
    ({}, {DOWNLOAD_POOL: 2, UNZIP_POOL: 2, SPARK_POOL: 1}),
    ({"MARKET_ETL_DOWNLOAD_CONCURRENCY": "3", "MARKET_ETL_UNZIP_CONCURRENCY": "4"},
     {DOWNLOAD_POOL: 3, UNZIP_POOL: 4, SPARK_POOL: 1}),
    # aws: the Glue jobs' max_concurrent_runs for every pool (downloads still within their own limit).
    (AWS, {DOWNLOAD_POOL: 2, UNZIP_POOL: 4, SPARK_POOL: 4}),
    ({**AWS, "MARKET_ETL_GLUE_MAX_CONCURRENT_RUNS": "10", "MARKET_ETL_DOWNLOAD_CONCURRENCY": "6"},
     {DOWNLOAD_POOL: 6, UNZIP_POOL: 10, SPARK_POOL: 10}),
    ({**AWS, "MARKET_ETL_GLUE_MAX_CONCURRENT_RUNS": "1", "MARKET_ETL_DOWNLOAD_CONCURRENCY": "6"},
     {DOWNLOAD_POOL: 1, UNZIP_POOL: 1, SPARK_POOL: 1}),
], ids=["local-defaults", "local-set", "aws-defaults", "aws-set", "aws-one-run-per-job"])
def test_init_home_sets_the_pool_limits_of_the_runtime(tmp_path, env, expected):
    with _init_home(tmp_path / "home", env) as instance:
        assert _slots(instance) == expected


def test_every_stage_asset_is_in_a_pool_init_home_limits():
    for settings in (Settings.from_env({}), Settings.from_env(AWS)):
        defs = build_definitions(settings)
        pool = lambda *path: defs.resolve_assets_def(dg.AssetKey(list(path))).op.pool
        assert pool("raw", "trades_zip") == DOWNLOAD_POOL
        assert pool("raw_unzipped", "trades_csv") == UNZIP_POOL
        assert pool("processed", "trades") == SPARK_POOL
        assert set(pool_limits(settings)) == {DOWNLOAD_POOL, UNZIP_POOL, SPARK_POOL}


def test_aws_default_matches_the_glue_jobs_concurrency_in_terraform():
    terraform_default = _flat("variable")["glue_max_concurrent_runs"]["default"]
    assert Settings.from_env(AWS).glue_max_concurrent_runs == terraform_default


def test_stage_assets_retry_with_exponential_backoff_and_jitter_from_settings():
    defs = build_definitions(Settings.from_env({"MARKET_ETL_STAGE_RETRIES": "5", "MARKET_ETL_STAGE_RETRY_DELAY": "7"}))
    for path in (["raw", "trades_zip"], ["raw_unzipped", "trades_csv"], ["processed", "trades"]):
        policy = defs.resolve_assets_def(dg.AssetKey(path)).op.retry_policy
        assert policy == dg.RetryPolicy(max_retries=5, delay=7.0, backoff=dg.Backoff.EXPONENTIAL,
                                        jitter=dg.Jitter.PLUS_MINUS), path
