"""Declarative automation: downstream assets follow raw/trades_zip by themselves.

The sensor in `sensors.py` requests only raw/trades_zip; every asset below it
carries `DOWNSTREAM_AUTOMATION`, and `automation_sensor()` evaluates those
conditions in the daemon.
"""

import dagster as dg

# `eager()` minus its `in_latest_time_window()`: eager alone would only ever consider the latest month,
# while a republished or newly listed archive can be any month. Plus: a partition runs only after every
# blocking check of its upstream partition passed (a bad month stops at the asset whose check failed).
DOWNSTREAM_AUTOMATION = (
    dg.AutomationCondition.eager()
    .without(dg.AutomationCondition.in_latest_time_window())
    .with_label("eager, any month")
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("downstream: eager, any month, after upstream blocking checks passed")

AUTOMATION_SENSOR_NAME = "downstream_automation"


def automation_sensor(minimum_interval_seconds: int = 30) -> dg.AutomationConditionSensorDefinition:
    """Evaluates every asset's automation condition; RUNNING by default: it reads only the instance."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR_NAME,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Runs downstream partitions once their upstream partition materialised and its "
                    "blocking checks passed (conditions: market_etl.defs.automation).",
    )
