"""A failed run raises an alert: published to SNS on the aws runtime (moto's SNS, read back through SQS), logged locally."""
import json
import logging
import uuid

import boto3
import dagster as dg
import pytest

from market_etl.defs.alerts import RUN_FAILURE_SENSOR_NAME, build_alert_sensor
from market_etl.resources import build_resources
from market_etl.resources.alerts import LogAlerter, SnsAlerter
from market_etl.settings import Settings

REGION = "us-east-1"
REASON = "stage 'download' failed: NotPublished: BTCUSDT-trades-2025-07.zip is not published yet"


@dg.op
def failing_stage():
    raise dg.Failure(description=REASON)


@dg.job(tags={"dagster/partition": "2025-07-01|BTCUSDT"})
def failing_job():
    failing_stage()


def _failure_context(instance, alerts):
    result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    [failure] = [e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"]
    return dg.build_run_status_sensor_context(
        sensor_name=RUN_FAILURE_SENSOR_NAME, dagster_event=failure, dagster_instance=instance, dagster_run=run,
        resources={"alerts": alerts},
    ).for_run_failure(), result.run_id


@pytest.fixture
def topic_and_queue(moto_endpoint):
    """An SNS topic with an SQS queue subscribed: what the topic publishes can be read back."""
    sns = boto3.client("sns", endpoint_url=moto_endpoint, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
    topic = sns.create_topic(Name=f"alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"inbox-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, sqs, queue_url


def test_a_failed_run_is_published_to_the_alerts_topic_on_aws(moto_endpoint, topic_and_queue, monkeypatch):
    topic, sqs, queue_url = topic_and_queue
    settings = Settings.from_env({"MARKET_ETL_RUNTIME": "aws", "MARKET_ETL_LAKE": "s3://lake/",
                                  "AWS_REGION": REGION, "MARKET_ETL_ALERTS_TOPIC_ARN": topic})
    alerts = build_resources(settings)["alerts"]
    assert isinstance(alerts, SnsAlerter) and alerts.topic_arn == topic
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", moto_endpoint)  # boto3's standard endpoint setting: SNS on moto
    sensor = build_alert_sensor()
    with dg.instance_for_test() as instance:
        context, run_id = _failure_context(instance, alerts)
        sensor(context)
    [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["TopicArn"] == topic
    assert envelope["Subject"] == "market-etl run failed: failing_job [2025-07-01|BTCUSDT]"
    body = json.loads(envelope["Message"])
    assert body["run_id"] == run_id and body["partition"] == "2025-07-01|BTCUSDT"
    assert body["steps"] == {"failing_stage": REASON}


def test_a_failed_run_is_logged_locally_and_nothing_is_published(topic_and_queue, caplog):
    _topic, sqs, queue_url = topic_and_queue
    alerts = build_resources(Settings.from_env({}))["alerts"]
    assert isinstance(alerts, LogAlerter)
    with dg.instance_for_test() as instance, caplog.at_level(logging.ERROR, logger="market_etl.resources.alerts"):
        context, run_id = _failure_context(instance, alerts)
        build_alert_sensor()(context)
    [record] = [r for r in caplog.records if r.name == "market_etl.resources.alerts"]
    assert "market-etl run failed: failing_job" in record.getMessage() and run_id in record.getMessage()
    assert REASON in record.getMessage()
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)


def test_aws_without_a_topic_logs_instead():
    settings = Settings.from_env({"MARKET_ETL_RUNTIME": "aws", "MARKET_ETL_LAKE": "s3://lake/"})
    assert isinstance(build_resources(settings)["alerts"], LogAlerter)
