"""The code location `dagster dev` loads (see workspace.yaml).

Built lazily by Dagster, so settings are read when the location loads, not at import.
"""

import dagster as dg

from market_etl.defs.alerts import build_alert_sensor
from market_etl.defs.analytics import build_analytics_assets
from market_etl.defs.maintenance import build_maintenance
from market_etl.defs.raw import build_lake_assets
from market_etl.defs.partitions import stage_retry_policy, trade_partitions
from market_etl.defs.processed import build_processed_assets
from market_etl.defs.sensors import build_sensors
from market_etl.resources import build_resources
from market_etl.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = trade_partitions(settings)
    retries = stage_retry_policy(settings)
    maintenance_job, maintenance_schedule = build_maintenance(settings.snapshot_retention_days,
                                                              settings.orphan_grace_days)
    return dg.Definitions(
        assets=[
            *build_lake_assets(partitions, retries),
            *build_processed_assets(partitions, settings.reject_tolerance, retries, lake_url=settings.lake),
            *build_analytics_assets(partitions),
        ],
        resources=build_resources(settings),
        sensors=[*build_sensors(settings, partitions), build_alert_sensor()],
        jobs=[maintenance_job],
        schedules=[maintenance_schedule],
        # A run is one partition's chain: its steps are sequential anyway, and the heavy work already runs in
        # stage subprocesses (or Glue). A process per step only added ~20 s of Python start-up to each of the
        # ~10 steps of every run; pools still apply per step.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
