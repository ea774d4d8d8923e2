"""The local Dagster instance (DAGSTER_HOME): created from the shipped dagster.yaml, pools limited from settings."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from market_etl.settings import Settings

# The repository's dagster.yaml, shipped inside the package (market_etl/dagster.yaml links to it).
SHIPPED_DAGSTER_YAML = resources.files("market_etl") / "dagster.yaml"
DEFAULT_HOME = ".dagster_home"


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at a directory with a dagster.yaml (Dagster warns on every command otherwise)."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        target.write_bytes(SHIPPED_DAGSTER_YAML.read_bytes())
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def pool_limits(settings: Settings) -> dict[str, int]:
    from market_etl.defs.keys import DOWNLOAD_POOL, SPARK_POOL

    return {DOWNLOAD_POOL: settings.download_concurrency, SPARK_POOL: 1}


def get_instance(settings: Settings):
    """The persistent instance, with pool limits applied (idempotent)."""
    import dagster as dg

    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    for pool, limit in pool_limits(settings).items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return instance
