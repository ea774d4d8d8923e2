# Alerting: a Glue job run that ends FAILED, TIMEOUT or ERROR is published to
# an SNS topic by an EventBridge rule, even when no Dagster process is alive
# to notice. Dagster's run-failure sensor (market_etl/defs/alerts.py)
# publishes failed runs to the same topic (MARKET_ETL_ALERTS_TOPIC_ARN), so
# one subscription sees both. The topic is encrypted with the project key
# (kms.tf lets EventBridge use it for this rule only).

locals {
  # Built from names (not from the rule) so the key policy can name it
  # without a dependency cycle (rule -> topic -> key -> key policy -> rule).
  glue_failure_rule_name = "${var.project_name}-glue-job-failed"
  glue_failure_rule_arn  = "arn:${local.partition}:events:${local.region}:${local.account_id}:rule/${local.glue_failure_rule_name}"
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.project_name}-alerts"
  kms_master_key_id = aws_kms_key.lake.arn
}

# Only this rule (EventBridge) and the account's IAM identities (the
# orchestrator policy grants sns:Publish) may publish.
data "aws_iam_policy_document" "alerts_topic" {
  statement {
    sid    = "EventBridgeGlueJobFailures"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [local.glue_failure_rule_arn]
    }
  }
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts_topic.json
}

# An e-mail subscription when alert_email is set (AWS sends a confirmation
# mail first; nothing arrives until it is confirmed).
resource "aws_sns_topic_subscription" "alerts_email" {
  count = var.alert_email == null ? 0 : 1

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

resource "aws_cloudwatch_event_rule" "glue_job_failed" {
  name        = local.glue_failure_rule_name
  description = "A run of a ${var.project_name} Glue job ended FAILED, TIMEOUT or ERROR."
  event_pattern = jsonencode({
    source        = ["aws.glue"]
    "detail-type" = ["Glue Job State Change"]
    detail = {
      jobName = [for job in [aws_glue_job.download, aws_glue_job.unzip, aws_glue_job.etl] : job.name]
      state   = ["FAILED", "TIMEOUT", "ERROR"]
    }
  })
}

resource "aws_cloudwatch_event_target" "glue_job_failed_to_sns" {
  rule      = aws_cloudwatch_event_rule.glue_job_failed.name
  target_id = "alerts-topic"
  arn       = aws_sns_topic.alerts.arn

  # The message names the job, the run and Glue's error message.
  input_transformer {
    input_paths = {
      job     = "$.detail.jobName"
      run     = "$.detail.jobRunId"
      state   = "$.detail.state"
      message = "$.detail.message"
    }
    input_template = "\"Glue job <job> run <run> ended <state>: <message>\""
  }
}
