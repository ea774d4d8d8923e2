"""A failed run raises an alert (SNS on aws, a log line locally), whatever failed in it."""

import dagster as dg

from market_etl.resources.alerts import Alerter

RUN_FAILURE_SENSOR_NAME = "run_failure_alerts"


def run_failure_alert(context: dg.RunFailureSensorContext) -> tuple[str, dict]:
    """The alert for one failed run: subject and body (run, job, partition, the failure's own message)."""
    run = context.dagster_run
    partition = run.tags.get("dagster/partition")
    subject = f"market-etl run failed: {run.job_name}" + (f" [{partition}]" if partition else "")
    body = {
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": partition,
        "failure": context.failure_event.message,
        "steps": {e.step_key: _reason(e) for e in context.get_step_failure_events()},
    }
    return subject, body


def _reason(event: dg.DagsterEvent) -> str:
    """A step failure's reason: the Failure's description (a stage's own error), else the error message."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip() if data.error else event.message or ""


def build_alert_sensor() -> dg.SensorDefinition:
    @dg.run_failure_sensor(name=RUN_FAILURE_SENSOR_NAME, default_status=dg.DefaultSensorStatus.RUNNING,
                           description="Sends every failed run of this location to the `alerts` resource: the "
                                       "project's SNS topic on the aws runtime, the log locally.")
    def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: Alerter):
        subject, body = run_failure_alert(context)
        alerts.send(subject, body)

    return run_failure_alerts
