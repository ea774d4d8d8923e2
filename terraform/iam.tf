# IAM: one role per job kind, and a policy for the Dagster orchestrator.
#
# Least privilege, checked by market_etl_tests/unit/test_terraform.py and checkov:
# - no wildcard action (no "*", no "service:*") in any Allow statement;
# - every resource is this project's bucket prefix, catalog table, job, log
#   group, workgroup or key. The one Resource "*" is cloudwatch:PutMetricData,
#   which has no resource-level permissions (AWS requirement), narrowed by a
#   namespace condition;
# - the ETL role deletes only in processed/, rejected/ and temp/; under raw/
#   (the source of truth) nothing may delete a zip: the download role may
#   only drop a zip's .meta.json sidecar before replacing the zip.

# =============================================================================
# Trust policy shared by the three job roles
# =============================================================================

data "aws_iam_policy_document" "glue_assume_role" {
  statement {
    sid     = "GlueAssumesJobRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["glue.amazonaws.com"]
    }
    # Confused-deputy guard: only Glue acting for this account.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# =============================================================================
# Statements every job role needs
# =============================================================================

data "aws_iam_policy_document" "glue_job_common" {
  # Key names only, no contents. Unscoped by prefix on purpose: without
  # s3:ListBucket, HeadObject/GetObject on a missing key answers 403 instead
  # of 404, and the stages (and Pipes readers) rely on "not found".
  statement {
    sid       = "ListLakeBucket"
    effect    = "Allow"
    actions   = ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [local.bucket_arn]
  }

  # Glue fetches the job script and the wheel with the job's own role.
  statement {
    sid       = "ReadArtifacts"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/${local.prefix_artifacts}*"]
  }

  # Dagster Pipes: the job reads its context and writes its messages
  # (materialisation metadata, check results) through S3.
  statement {
    sid       = "PipesContextAndMessages"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${local.bucket_arn}/${local.prefix_pipes}*"]
  }

  # SSE-KMS reads/writes, CSE-KMS bookmarks, encrypted logs.
  statement {
    sid    = "UseProjectKey"
    effect = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey",
    ]
    resources = [aws_kms_key.lake.arn]
  }

  # Our managed groups (/aws-glue/jobs/market-etl, .../output, .../error)
  # and the groups Glue derives under the security configuration, whose
  # names also start with /aws-glue/jobs/<project> (the security
  # configuration is named after the project). CreateLogGroup and
  # AssociateKmsKey: Glue creates and encrypts those derived groups itself.
  statement {
    sid    = "WriteJobLogs"
    effect = "Allow"
    actions = [
      "logs:AssociateKmsKey",
      "logs:CreateLogGroup",
      "logs:CreateLogStream",
      "logs:PutLogEvents",
    ]
    resources = [
      "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.glue_log_group_name}*",
    ]
  }
}

# Python shell jobs write their driver output to /aws-glue/python-jobs/...
# (Glue's fixed naming; not configurable), so they also get that prefix.
data "aws_iam_policy_document" "glue_python_shell_logs" {
  statement {
    sid    = "WritePythonShellLogs"
    effect = "Allow"
    actions = [
      "logs:AssociateKmsKey",
      "logs:CreateLogGroup",
      "logs:CreateLogStream",
      "logs:PutLogEvents",
    ]
    resources = [
      "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws-glue/python-jobs/*",
    ]
  }
}

# =============================================================================
# Download role: writes raw/ only
# =============================================================================

data "aws_iam_policy_document" "download" {
  source_policy_documents = [
    data.aws_iam_policy_document.glue_job_common.json,
    data.aws_iam_policy_document.glue_python_shell_logs.json,
  ]

  # GetObject: "already present with the same sha256?" (HeadObject needs it,
  # and the digest is read from the zip's .meta.json sidecar).
  # Put + multipart: the streamed upload; Abort: clean up on failure.
  # A failed download leaves nothing visible because the multipart upload is
  # aborted, not because an object is deleted: no delete on the zips.
  statement {
    sid    = "WriteRawZone"
    effect = "Allow"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetObject",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = ["${local.bucket_arn}/${local.prefix_raw}*"]
  }

  # The one delete under raw/: before replacing a zip, the download stage
  # drops its .meta.json sidecar (market_etl/core/download.py), so a crash in
  # between reads as "unknown version, download again", never as a new zip
  # described by the old digest. Granted on sidecars only; the zips cannot be
  # deleted (and versioning keeps the old sidecar as a noncurrent version).
  statement {
    sid       = "ReplaceRawSidecars"
    effect    = "Allow"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.bucket_arn}/${local.prefix_raw}*.meta.json"]
  }
}

resource "aws_iam_role" "download" {
  name                 = "${var.project_name}-glue-download"
  description          = "Glue job market-etl-download: write verified Binance zips to raw/."
  assume_role_policy   = data.aws_iam_policy_document.glue_assume_role.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "download" {
  name   = "lake-access"
  role   = aws_iam_role.download.id
  policy = data.aws_iam_policy_document.download.json
}

# =============================================================================
# Unzip role: reads raw/, writes raw_unzipped/
# =============================================================================

data "aws_iam_policy_document" "unzip" {
  source_policy_documents = [
    data.aws_iam_policy_document.glue_job_common.json,
    data.aws_iam_policy_document.glue_python_shell_logs.json,
  ]

  statement {
    sid       = "ReadRawZone"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/${local.prefix_raw}*"]
  }

  statement {
    sid    = "WriteRawUnzippedZone"
    effect = "Allow"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetObject",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = ["${local.bucket_arn}/${local.prefix_raw_unzipped}*"]
  }
}

resource "aws_iam_role" "unzip" {
  name                 = "${var.project_name}-glue-unzip"
  description          = "Glue job market-etl-unzip: read raw/ zips, write raw_unzipped/ CSVs."
  assume_role_policy   = data.aws_iam_policy_document.glue_assume_role.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "unzip" {
  name   = "lake-access"
  role   = aws_iam_role.unzip.id
  policy = data.aws_iam_policy_document.unzip.json
}

# =============================================================================
# ETL role: reads raw_unzipped/, writes processed/, rejected/, temp/
# =============================================================================

data "aws_iam_policy_document" "etl" {
  source_policy_documents = [data.aws_iam_policy_document.glue_job_common.json]

  statement {
    sid       = "ReadRawUnzippedZone"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/${local.prefix_raw_unzipped}*"]
  }

  # Spark's commit protocol writes, renames (copy + delete) and cleans up
  # inside its output and scratch prefixes, so delete is granted there and
  # nowhere else: never on raw/ or raw_unzipped/.
  statement {
    sid    = "WriteDerivedZones"
    effect = "Allow"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:DeleteObject",
      "s3:GetObject",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = [
      "${local.bucket_arn}/${local.prefix_processed}*",
      "${local.bucket_arn}/${local.prefix_rejected}*",
      "${local.bucket_arn}/${local.prefix_temp}*",
    ]
  }

  # Partition APIs on the trades table only (catalog and database ARNs are
  # required alongside the table ARN for table-level calls).
  statement {
    sid    = "TradesTablePartitions"
    effect = "Allow"
    actions = [
      "glue:BatchCreatePartition",
      "glue:BatchDeletePartition",
      "glue:BatchGetPartition",
      "glue:BatchUpdatePartition",
      "glue:CreatePartition",
      "glue:DeletePartition",
      "glue:GetDatabase",
      "glue:GetPartition",
      "glue:GetPartitions",
      "glue:GetTable",
      "glue:UpdatePartition",
    ]
    resources = [
      local.glue_catalog_arn,
      local.glue_database_arn,
      local.glue_table_arn,
    ]
  }

  # --enable-metrics: cloudwatch:PutMetricData supports no resource-level
  # permissions, so Resource "*" is required; the condition limits it to
  # Glue's metric namespace.
  statement {
    sid       = "PublishGlueJobMetrics"
    effect    = "Allow"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["Glue"]
    }
  }
}

resource "aws_iam_role" "etl" {
  name                 = "${var.project_name}-glue-etl"
  description          = "Glue job market-etl-etl: raw_unzipped/ CSV to processed/ Parquet, rejected/ quarantine, trades partitions."
  assume_role_policy   = data.aws_iam_policy_document.glue_assume_role.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "etl" {
  name   = "lake-access"
  role   = aws_iam_role.etl.id
  policy = data.aws_iam_policy_document.etl.json
}

# =============================================================================
# Dagster orchestrator policy (an output; attach it to whatever identity runs
# the Dagster daemon and code server: an ECS task role, an EC2 role, ...)
# =============================================================================

data "aws_iam_policy_document" "orchestrator" {
  # PipesGlueClient: start a run, poll it, stop it on cancellation.
  statement {
    sid    = "RunStageJobs"
    effect = "Allow"
    actions = [
      "glue:BatchStopJobRun",
      "glue:GetJob",
      "glue:GetJobRun",
      "glue:GetJobRuns",
      "glue:StartJobRun",
    ]
    resources = [
      aws_glue_job.download.arn,
      aws_glue_job.unzip.arn,
      aws_glue_job.etl.arn,
    ]
  }

  statement {
    sid       = "ListLakeBucket"
    effect    = "Allow"
    actions   = ["s3:GetBucketLocation", "s3:ListBucket"]
    resources = [local.bucket_arn]
  }

  # Pipes context injector (writes, then deletes the context) and message
  # reader (reads the job's messages).
  statement {
    sid       = "PipesContextAndMessages"
    effect    = "Allow"
    actions   = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    resources = ["${local.bucket_arn}/${local.prefix_pipes}*"]
  }

  # Athena queries in the project workgroup only.
  statement {
    sid    = "QueryInWorkgroup"
    effect = "Allow"
    actions = [
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:GetWorkGroup",
      "athena:StartQueryExecution",
      "athena:StopQueryExecution",
    ]
    resources = [aws_athena_workgroup.market_etl.arn]
  }

  # What an Athena query needs with the caller's credentials: the tables'
  # metadata (Athena also reads the "default" database), their Parquet files,
  # and the workgroup's result prefix.
  statement {
    sid    = "ReadTableMetadata"
    effect = "Allow"
    actions = [
      "glue:BatchGetPartition",
      "glue:GetDatabase",
      "glue:GetPartition",
      "glue:GetPartitions",
      "glue:GetTable",
    ]
    resources = [
      local.glue_catalog_arn,
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:database/default",
      local.glue_database_arn,
      local.glue_table_arn,
      aws_glue_catalog_table.ohlcv_1m.arn,
      aws_glue_catalog_table.daily_trade_stats.arn,
    ]
  }

  # analytics/: the asset checks query it, and the engine reads the Parquet
  # footers of what an UNLOAD wrote (row counts).
  statement {
    sid     = "ReadQueriedZones"
    effect  = "Allow"
    actions = ["s3:GetObject"]
    resources = [
      "${local.bucket_arn}/${local.prefix_processed}*",
      "${local.bucket_arn}/${local.prefix_analytics}*",
    ]
  }

  # Athena's UNLOAD writes analytics runs with the caller's credentials; the
  # engine deletes a failed run's prefix, and older runs once the Glue
  # partition points at the new one.
  statement {
    sid    = "WriteAnalyticsRuns"
    effect = "Allow"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:DeleteObject",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = ["${local.bucket_arn}/${local.prefix_analytics}*"]
  }

  statement {
    sid    = "AthenaResults"
    effect = "Allow"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetObject",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = ["${local.bucket_arn}/${local.prefix_athena_results}*"]
  }

  # Partitions are registered by the pipeline only once the partition's
  # blocking checks have passed (glue_catalog.tf): that step runs in Dagster.
  # Analytics partitions are created, then moved to each new run's prefix.
  statement {
    sid    = "RegisterPartitions"
    effect = "Allow"
    actions = [
      "glue:BatchCreatePartition",
      "glue:BatchDeletePartition",
      "glue:BatchUpdatePartition",
      "glue:CreatePartition",
      "glue:DeletePartition",
      "glue:UpdatePartition",
    ]
    resources = [
      local.glue_catalog_arn,
      local.glue_database_arn,
      local.glue_table_arn,
      aws_glue_catalog_table.ohlcv_1m.arn,
      aws_glue_catalog_table.daily_trade_stats.arn,
    ]
  }

  statement {
    sid    = "UseProjectKey"
    effect = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey",
    ]
    resources = [aws_kms_key.lake.arn]
  }
}

resource "aws_iam_policy" "orchestrator" {
  name        = "${var.project_name}-dagster-orchestrator"
  description = "Dagster side of market-etl: run and stop the three Glue stage jobs, exchange Pipes messages under pipes/, query Athena in the project workgroup, register validated trades partitions, write analytics with Athena UNLOAD and register them."
  policy      = data.aws_iam_policy_document.orchestrator.json
}
