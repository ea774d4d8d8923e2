"""The local Dagster instance (DAGSTER_HOME): created from the shipped dagster.yaml, pools limited from settings."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from market_etl.settings import Settings

# The repository's dagster.yaml, shipped inside the package (market_etl/dagster.yaml links to it).
SHIPPED_DAGSTER_YAML = resources.files("market_etl") / "dagster.yaml"
#: The long-running instance: PostgreSQL storage, queued runs (README, "Running Dagster long-term").
PRODUCTION_DAGSTER_YAML = resources.files("market_etl") / "dagster.production.yaml"
DEFAULT_HOME = ".dagster_home"


def ensure_dagster_home(production: bool = False) -> Path:
    """Point DAGSTER_HOME at a directory with a dagster.yaml (Dagster warns on every command otherwise).

    An existing dagster.yaml is kept; a new home gets the local one, or the production one (`production`)."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        target.write_bytes((PRODUCTION_DAGSTER_YAML if production else SHIPPED_DAGSTER_YAML).read_bytes())
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def pool_limits(settings: Settings) -> dict[str, int]:
    """Steps of each stage pool that may run at once, by runtime.

    local: what one machine takes: `MARKET_ETL_DOWNLOAD_CONCURRENCY` downloads, `MARKET_ETL_UNZIP_CONCURRENCY`
    unzips, one Spark stage (a local session wants every core). aws: the work runs in Glue, so every pool is
    the Glue jobs' `max_concurrent_runs` (`MARKET_ETL_GLUE_MAX_CONCURRENT_RUNS`, from Terraform's
    glue_max_concurrent_runs): more steps than that would fail with ConcurrentRunsExceededException. Downloads
    stay within `MARKET_ETL_DOWNLOAD_CONCURRENCY` on both runtimes: the limit is politeness towards Binance.
    """
    from market_etl.defs.keys import DOWNLOAD_POOL, SPARK_POOL, UNZIP_POOL

    if settings.runtime == "aws":
        glue = settings.glue_max_concurrent_runs
        return {DOWNLOAD_POOL: min(settings.download_concurrency, glue), UNZIP_POOL: glue, SPARK_POOL: glue}
    return {DOWNLOAD_POOL: settings.download_concurrency, UNZIP_POOL: settings.unzip_concurrency, SPARK_POOL: 1}


def get_instance(settings: Settings, production: bool = False):
    """The persistent instance, with pool limits applied (idempotent)."""
    import dagster as dg

    ensure_dagster_home(production)
    instance = dg.DagsterInstance.get()
    for pool, limit in pool_limits(settings).items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return instance
