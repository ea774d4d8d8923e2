# One customer managed key for everything the stack stores: both buckets
# (SSE-KMS), the Glue security configuration (S3 writes, CloudWatch logs,
# CSE-KMS job bookmarks), the CloudWatch log groups and Athena results.
# One key keeps the grants in one place; the data is one project's data.

resource "aws_kms_key" "lake" {
  description             = "${var.project_name}: data lake, Glue job logs and Athena results"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms_key.json
}

resource "aws_kms_alias" "lake" {
  name          = "alias/${var.project_name}"
  target_key_id = aws_kms_key.lake.key_id
}

# Key policy. In a key policy `resources = ["*"]` means "this key" and is the
# only value KMS accepts, so every statement below uses it (AWS requirement,
# not a wildcard grant).
data "aws_iam_policy_document" "kms_key" {
  #checkov:skip=CKV_AWS_109:Key policy: resources "*" is this key (KMS requires it); the account statement must keep kms:PutKeyPolicy or the key becomes unmanageable.
  #checkov:skip=CKV_AWS_111:Key policy: resources "*" is this key (KMS requires it); write actions are limited to this key.
  #checkov:skip=CKV_AWS_356:Key policy: resources "*" is the only value KMS accepts and means this key.

  # The account (and through it IAM policies) may administer and use the key.
  # Actions are listed one by one instead of kms:* so no policy in this stack
  # holds a wildcard action; IAM policies can grant only what is listed here.
  statement {
    sid    = "AccountAdministersAndDelegatesToIam"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
    actions = [
      "kms:CancelKeyDeletion",
      "kms:CreateAlias",
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DeleteAlias",
      "kms:DescribeKey",
      "kms:DisableKey",
      "kms:DisableKeyRotation",
      "kms:EnableKey",
      "kms:EnableKeyRotation",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListAliases",
      "kms:ListGrants",
      "kms:ListKeyPolicies",
      "kms:ListKeyRotations",
      "kms:ListResourceTags",
      "kms:PutKeyPolicy",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
      "kms:RetireGrant",
      "kms:RevokeGrant",
      "kms:RotateKeyOnDemand",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:UpdateAlias",
      "kms:UpdateKeyDescription",
    ]
    resources = ["*"]
  }

  # CloudWatch Logs encrypts the Glue job log groups (ours in logs.tf, and the
  # ones Glue creates for a job with a security configuration) with this key.
  # The encryption context pins it to this account's /aws-glue/ log groups.
  statement {
    sid    = "CloudWatchLogsForGlueJobLogGroups"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
    ]
    resources = ["*"]
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws-glue/*"]
    }
  }

  # S3 server access log delivery writes into the log bucket, which is
  # encrypted with this key; only for the lake bucket's logs.
  statement {
    sid    = "S3ServerAccessLogDelivery"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    actions = [
      "kms:Decrypt",
      "kms:GenerateDataKey",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.bucket_arn]
    }
  }

  # EventBridge publishes Glue job failures to the alerts topic, which is
  # encrypted with this key (alerting.tf); only for the project's rule.
  statement {
    sid    = "EventBridgeToAlertsTopic"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    actions = [
      "kms:Decrypt",
      "kms:GenerateDataKey",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.glue_failure_rule_arn]
    }
  }
}
