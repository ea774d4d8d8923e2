# IAM: one role per job kind, and a policy for the Dagster orchestrator.
#
# Least privilege, checked by market_etl_tests/unit/test_terraform.py and checkov:
# - no wildcard action (no "*", no "service:*") in any Allow statement;
# - every resource is this project's bucket prefix, catalog database or
#   table (named one by one), job, log group, workgroup or key. The one Resource "*" is cloudwatch:PutMetricData,
#   which has no resource-level permissions (AWS requirement), narrowed by a
#   namespace condition;
# - the ETL role deletes only in processed/, rejected/ and temp/; under raw/
#   (the source of truth) nothing may delete a zip: the download role may
#   only drop a zip's .meta.json sidecar before replacing the zip;
# - only the orchestrator touches the Glue Data Catalog: it commits the
#   Iceberg tables (pyiceberg's GlueCatalog). The job roles make no catalog
#   call at all.

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
#
# The ETL only writes files (run-unique data files under processed/ and
# rejected/, scratch under temp/, its manifest under processed/_staged/); the
# orchestrator audits and commits them to the Iceberg tables. So this role has
# no Glue Data Catalog permission at all.
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
  description          = "Glue job market-etl-etl: raw_unzipped/ CSV to staged processed/ Parquet and rejected/ quarantine files, with their manifest; no catalog access."
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

  # The Iceberg tables in the Glue Data Catalog (glue_catalog.tf): the four
  # tables market_etl/core/tables.py declares, named one by one. Reads serve
  # pyiceberg (load a table, list the database) and Athena, which reads the
  # catalog with the caller's credentials (it also looks up "default").
  statement {
    sid    = "ReadIcebergCatalog"
    effect = "Allow"
    actions = [
      "glue:GetDatabase",
      "glue:GetTable",
      "glue:GetTables",
    ]
    resources = [
      local.glue_catalog_arn,
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:database/default",
      local.glue_database_arn,
      "${local.glue_table_arn_prefix}trades_binance",
      "${local.glue_table_arn_prefix}trades_rejected",
      "${local.glue_table_arn_prefix}ohlcv_1m",
      "${local.glue_table_arn_prefix}daily_trade_stats",
    ]
  }

  # The first use creates the tables from the code's declaration
  # (create_namespace_if_not_exists, then create_table): Glue answers
  # "already exists" for the database Terraform made, but only after IAM let
  # the CreateDatabase call through.
  statement {
    sid       = "CreateIcebergDatabase"
    effect    = "Allow"
    actions   = ["glue:CreateDatabase"]
    resources = [local.glue_catalog_arn, local.glue_database_arn]
  }

  # A commit writes new metadata files, then swaps the table's
  # metadata_location with glue:UpdateTable, conditioned on the Glue table
  # version it read (optimistic concurrency: the loser retries). No
  # DeleteTable: nothing in the pipeline drops a table.
  statement {
    sid    = "CommitIcebergTables"
    effect = "Allow"
    actions = [
      "glue:CreateTable",
      "glue:UpdateTable",
    ]
    resources = [
      local.glue_catalog_arn,
      local.glue_database_arn,
      "${local.glue_table_arn_prefix}trades_binance",
      "${local.glue_table_arn_prefix}trades_rejected",
      "${local.glue_table_arn_prefix}ohlcv_1m",
      "${local.glue_table_arn_prefix}daily_trade_stats",
    ]
  }

  # Read: the staged files and manifests (processed/_staged/) the publish
  # step audits and commits, the quarantine, the analytics UNLOAD output
  # (row counts from Parquet footers), every table's Iceberg metadata, and
  # the data files an Athena query scans with the caller's credentials.
  statement {
    sid     = "ReadLakeTables"
    effect  = "Allow"
    actions = ["s3:GetObject"]
    resources = [
      "${local.bucket_arn}/${local.prefix_processed}*",
      "${local.bucket_arn}/${local.prefix_rejected}*",
      "${local.bucket_arn}/${local.prefix_analytics}*",
    ]
  }

  # Each commit writes metadata JSON, manifest lists and manifests under the
  # table's own metadata/ directory, and nowhere else.
  statement {
    sid    = "WriteIcebergMetadata"
    effect = "Allow"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = [
      "${local.bucket_arn}/${local.prefix_processed}trades/metadata/*",
      "${local.bucket_arn}/${local.prefix_rejected}trades/metadata/*",
      "${local.bucket_arn}/${local.prefix_analytics}ohlcv_1m/metadata/*",
      "${local.bucket_arn}/${local.prefix_analytics}daily_trade_stats/metadata/*",
    ]
  }

  # The maintenance job deletes, under each table's directory, the files no
  # remaining snapshot references (old versions past the retention, the
  # loser of a concurrent publish, metadata the catalog no longer lists).
  statement {
    sid       = "CollectUnreferencedFiles"
    effect    = "Allow"
    actions   = ["s3:DeleteObject"]
    resources = [
      "${local.bucket_arn}/${local.prefix_processed}trades/*",
      "${local.bucket_arn}/${local.prefix_rejected}trades/*",
      "${local.bucket_arn}/${local.prefix_analytics}ohlcv_1m/*",
      "${local.bucket_arn}/${local.prefix_analytics}daily_trade_stats/*",
    ]
  }

  # The maintenance job also deletes scratch output killed runs left in
  # temp/ (a lifecycle rule expires it too, later).
  statement {
    sid       = "DeleteExpiredScratch"
    effect    = "Allow"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.bucket_arn}/${local.prefix_temp}*"]
  }

  # Athena's UNLOAD writes each analytics run into its own prefix with the
  # caller's credentials; the engine deletes a run's prefix when its commit
  # fails.
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

  # The run-failure sensor publishes failed runs to the alerts topic (alerting.tf).
  statement {
    sid       = "PublishAlerts"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }
}

resource "aws_iam_policy" "orchestrator" {
  name        = "${var.project_name}-dagster-orchestrator"
  description = "Dagster side of market-etl: run and stop the three Glue stage jobs, exchange Pipes messages under pipes/, query Athena in the project workgroup, write analytics with Athena UNLOAD, commit audited files to the Iceberg tables in Glue, collect unreferenced files."
  policy      = data.aws_iam_policy_document.orchestrator.json
}
