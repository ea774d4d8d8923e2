"""terraform/ for running the stack: alerts on Glue failures, the Dagster environment it prints, the lake's place.

Parsed with python-hcl2 like test_terraform.py (no terraform binary offline); computed values are compared as written.
"""
import re

import pytest

from market_etl.resources import build_resources
from market_etl.settings import Settings
from market_etl_tests.unit.test_terraform import TF_DIR, _flat, _named, _resources

TOPIC = "${aws_sns_topic.alerts.arn}"
GLUE_JOBS = "[aws_glue_job.download, aws_glue_job.unzip, aws_glue_job.etl]"


def test_glue_job_failures_go_to_the_encrypted_alerts_topic():
    rule = _resources("aws_cloudwatch_event_rule")["glue_job_failed"]
    pattern = rule["event_pattern"]
    assert 'source = ["aws.glue"]' in pattern and '"detail-type" = ["Glue Job State Change"]' in pattern
    assert 'state = ["FAILED", "TIMEOUT", "ERROR"]' in pattern
    assert f"for job in {GLUE_JOBS} : job.name" in pattern  # every stage job, only ours
    assert rule["name"] == "${local.glue_failure_rule_name}"

    (target,) = _resources("aws_cloudwatch_event_target").values()
    assert target["rule"] == "${aws_cloudwatch_event_rule.glue_job_failed.name}" and target["arn"] == TOPIC
    (topic,) = _resources("aws_sns_topic").values()
    assert topic["kms_master_key_id"] == "${aws_kms_key.lake.arn}"

    # Only this rule may publish as EventBridge, and only this rule may use the key as EventBridge.
    (publish,) = _flat_data("aws_iam_policy_document")["alerts_topic"]["statement"]
    assert publish["actions"] == ["sns:Publish"] and publish["resources"] == [TOPIC]
    assert publish["condition"][0]["values"] == ["${local.glue_failure_rule_arn}"]
    [kms] = [s for s in _flat_data("aws_iam_policy_document")["kms_key"]["statement"]
             if s.get("sid") == "EventBridgeToAlertsTopic"]
    assert {c["variable"]: c["values"] for c in kms["condition"]}["aws:SourceArn"] == ["${local.glue_failure_rule_arn}"]
    assert sorted(kms["actions"]) == ["kms:Decrypt", "kms:GenerateDataKey"]


def test_the_rule_arn_the_policies_name_is_the_rules_own():
    text = (TF_DIR / "alerting.tf").read_text()
    assert 'glue_failure_rule_name = "${var.project_name}-glue-job-failed"' in text
    assert ':rule/${local.glue_failure_rule_name}"' in text


def test_email_subscription_is_optional():
    assert _flat("variable")["alert_email"].get("default") is None
    subscription = _resources("aws_sns_topic_subscription")["alerts_email"]
    assert subscription["count"] == "${var.alert_email == null ? 0 : 1}"
    assert (subscription["protocol"], subscription["topic_arn"]) == ("email", TOPIC)


def test_the_orchestrator_may_publish_alerts():
    statements = _flat_data("aws_iam_policy_document")["orchestrator"]["statement"]
    [publish] = [s for s in statements if s.get("sid") == "PublishAlerts"]
    assert publish["actions"] == ["sns:Publish"] and publish["resources"] == [TOPIC]
    assert "alerts_topic_arn" in _flat("output")


def _environment_block() -> dict[str, str]:
    value = _flat("output")["dagster_environment"]["value"]
    lines = [line.strip() for line in value.splitlines()[1:] if line.strip() and line.strip() != "EOT"]
    return dict(line.split("=", 1) for line in lines)


def test_terraform_prints_the_dagster_environment_the_settings_read():
    block = _environment_block()
    settings_source = (TF_DIR.parent / "market_etl" / "settings.py").read_text()
    for name in block:
        assert f'"{name}"' in settings_source, f"{name}: Settings does not read it"
    assert block["MARKET_ETL_RUNTIME"] == "aws"
    assert block["MARKET_ETL_LAKE"] == "s3://${aws_s3_bucket.lake.id}/"
    assert block["MARKET_ETL_ATHENA_WORKGROUP"] == "${aws_athena_workgroup.market_etl.name}"
    assert block["MARKET_ETL_ALERTS_TOPIC_ARN"] == TOPIC
    assert block["MARKET_ETL_GLUE_MAX_CONCURRENT_RUNS"] == "${var.glue_max_concurrent_runs}"
    assert block["MARKET_ETL_GLUE_JOB_PREFIX"] == '${trimsuffix(aws_glue_job.download.name, "download")}'
    # With the values Terraform would fill in, the settings build the aws runtime's resources from it.
    filled = {"s3://${aws_s3_bucket.lake.id}/": "s3://market-etl-lake-1-eu-west-1/",
              "${aws_s3_bucket.lake.id}": "market-etl-lake-1-eu-west-1", "${local.region}": "eu-west-1",
              '${trimsuffix(aws_glue_job.download.name, "download")}': "market-etl-",
              "${var.glue_max_concurrent_runs}": "4", "${aws_athena_workgroup.market_etl.name}": "market-etl",
              TOPIC: "arn:aws:sns:eu-west-1:1:market-etl-alerts"}
    env = {name: filled.get(value, value) for name, value in block.items()}
    settings = Settings.from_env(env)
    resources = build_resources(settings)
    assert resources["stages"].job_names["etl"] == "market-etl-etl"
    assert resources["sql"].work_group == "market-etl"
    assert resources["alerts"].topic_arn == "arn:aws:sns:eu-west-1:1:market-etl-alerts"


def test_workgroup_comes_from_settings():
    settings = Settings.from_env({"MARKET_ETL_RUNTIME": "aws", "MARKET_ETL_LAKE": "s3://b/",
                                  "MARKET_ETL_ATHENA_WORKGROUP": "staging-etl"})
    assert build_resources(settings)["sql"].work_group == "staging-etl"


@pytest.mark.parametrize("lake", ["s3://the-lake/data/", "s3://the-lake/data"])
def test_an_aws_lake_under_a_prefix_is_refused_with_what_to_do(lake):
    with pytest.raises(ValueError, match=re.escape("the lake is a whole bucket, s3://<bucket>/")):
        Settings.from_env({"MARKET_ETL_RUNTIME": "aws", "MARKET_ETL_LAKE": lake})
    for whole in ("s3://the-lake/", "s3://the-lake"):
        assert Settings.from_env({"MARKET_ETL_RUNTIME": "aws", "MARKET_ETL_LAKE": whole}).lake == whole


def _flat_data(type_: str) -> dict:
    return _named("data")[type_]
