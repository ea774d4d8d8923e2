"""Where failed runs are reported: the Dagster log locally, the project's SNS topic on aws.

The same topic receives EventBridge's Glue job state changes (terraform/alerting.tf), so one subscription
(e-mail, chat, paging) sees both a Glue job that failed and a Dagster run that failed for any other reason.
"""
from __future__ import annotations

import json
import logging

import boto3
import dagster as dg

log = logging.getLogger(__name__)


class Alerter(dg.ConfigurableResource):
    """Sends one alert: a subject line and a JSON-serialisable body."""

    def send(self, subject: str, body: dict) -> None:
        raise NotImplementedError


class LogAlerter(Alerter):
    """Local runtime: the alert is a log line (nobody to page on a laptop)."""

    def send(self, subject: str, body: dict) -> None:
        log.error("%s: %s", subject, json.dumps(body, sort_keys=True))


class SnsAlerter(Alerter):
    """aws runtime: publishes to the alerts topic (terraform output `alerts_topic_arn`)."""

    topic_arn: str
    region: str | None = None
    endpoint_url: str | None = None

    def send(self, subject: str, body: dict) -> None:
        sns = boto3.client("sns", region_name=self.region, endpoint_url=self.endpoint_url)
        # SNS subjects: at most 100 ASCII characters, no line breaks.
        clean = " ".join(subject.encode("ascii", "replace").decode().split())[:100]
        sns.publish(TopicArn=self.topic_arn, Subject=clean, Message=json.dumps(body, indent=2, sort_keys=True))
