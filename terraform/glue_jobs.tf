# The three stage jobs and the artifacts they run (built by `make package`).
#
# Dagster launches them with PipesGlueClient (one run per symbol x month
# partition) and passes every run argument; the defaults below are only the
# runtime set-up. Common to all three:
# - job bookmarks disabled: the Dagster partition, not a bookmark, is the unit
#   of idempotency (a bookmark would make a re-run of a processed input read
#   nothing);
# - max_retries = 0: Dagster's RetryPolicy on each stage asset retries, with
#   exponential backoff and jitter (MARKET_ETL_STAGE_RETRIES/_DELAY), and sees
#   every attempt; Glue retrying underneath would hide them;
# - the security configuration (encrypted S3 writes, logs and bookmarks);
# - a timeout, so a stalled run fails instead of holding a slot for 48 hours;
# - max_concurrent_runs > 1, so a backfill's parallel runs are accepted;
#   Dagster's pools on aws take the same number (MARKET_ETL_GLUE_MAX_CONCURRENT_RUNS,
#   printed by `terraform output dagster_environment`).
#
# The scripts import only dagster_pipes and the project's own modules, never
# dagster itself.

# =============================================================================
# Artifacts: what `make package` builds into dist/glue/, exactly that
# =============================================================================
#
# - jobs/<stage>.py: each job's script (the stage entry point);
# - market_etl_python_shell-<version>-py3-none-any.whl: the download and unzip
#   stages with only the modules they import, 3.9-compatible, no dependencies
#   (devtools/market_etl_devtools/package.py);
# - market_etl-<version>-py3-none-any.whl: the runtime package for the Spark
#   job (Python 3.11), never the tooling (mirror, benchmarks, demo).
# Wheel keys keep their file names: pip installs only a file named like a
# wheel (name-version-tags.whl).

locals {
  artifacts_source         = startswith(var.artifacts_dir, "/") ? var.artifacts_dir : "${path.module}/${var.artifacts_dir}"
  python_shell_bundle_file = "market_etl_python_shell-${var.package_version}-py3-none-any.whl"
  runtime_wheel_file       = "market_etl-${var.package_version}-py3-none-any.whl"
  stage_scripts            = toset(["download", "unzip", "etl"])
}

resource "aws_s3_object" "stage_script" {
  for_each = local.stage_scripts

  bucket      = aws_s3_bucket.lake.id
  key         = "${local.prefix_artifacts}glue/jobs/${each.key}.py"
  source      = "${local.artifacts_source}/jobs/${each.key}.py"
  source_hash = filemd5("${local.artifacts_source}/jobs/${each.key}.py")
  kms_key_id  = aws_kms_key.lake.arn
}

resource "aws_s3_object" "python_shell_bundle" {
  bucket      = aws_s3_bucket.lake.id
  key         = "${local.prefix_artifacts}wheels/${local.python_shell_bundle_file}"
  source      = "${local.artifacts_source}/${local.python_shell_bundle_file}"
  source_hash = filemd5("${local.artifacts_source}/${local.python_shell_bundle_file}")
  kms_key_id  = aws_kms_key.lake.arn
}

resource "aws_s3_object" "runtime_wheel" {
  bucket      = aws_s3_bucket.lake.id
  key         = "${local.prefix_artifacts}wheels/${local.runtime_wheel_file}"
  source      = "${local.artifacts_source}/${local.runtime_wheel_file}"
  source_hash = filemd5("${local.artifacts_source}/${local.runtime_wheel_file}")
  kms_key_id  = aws_kms_key.lake.arn
}

# =============================================================================
# Security configuration
# =============================================================================

resource "aws_glue_security_configuration" "this" {
  name = var.project_name

  encryption_configuration {
    cloudwatch_encryption {
      cloudwatch_encryption_mode = "SSE-KMS"
      kms_key_arn                = aws_kms_key.lake.arn
    }

    # Bookmarks are disabled on every job; encrypting them anyway keeps the
    # configuration complete if one is ever turned on.
    job_bookmarks_encryption {
      job_bookmarks_encryption_mode = "CSE-KMS"
      kms_key_arn                   = aws_kms_key.lake.arn
    }

    s3_encryption {
      s3_encryption_mode = "SSE-KMS"
      kms_key_arn        = aws_kms_key.lake.arn
    }
  }
}

# =============================================================================
# Download and unzip: Glue Python shell jobs
# =============================================================================
#
# Both stages stream (HTTP -> S3 multipart; zip entry -> S3 multipart) with a
# bounded buffer, so a Python shell job (1/16 DPU, no Spark start-up) is
# enough and cheap.
#
# Python shell runs Python 3.9 ONLY. dagster-pipes 1.11+ requires 3.10, so
# these jobs install dagster-pipes 1.10.21, the last release for 3.9 (same
# Pipes protocol, "0.1", as the 1.13 orchestrator). Consequences:
# - they get the Python shell bundle, not the runtime wheel: only the modules
#   download.py and unzip.py import, Requires-Python >= 3.9, no dependencies
#   (vermin checks the bundled files for 3.9 in the test suite);
# - every third-party module they import is preinstalled (boto3, botocore) or
#   in var.python_shell_additional_modules, whose CPython 3.9 manylinux wheels
#   `make package` verifies (devtools/market_etl_devtools/package.py).
# AWS steers Python shell workloads to Spark jobs or Lambda; if 3.9 becomes a
# burden, move these two to glueetl with 2 G.025X workers.

resource "aws_glue_job" "download" {
  name                   = "market-etl-download"
  description            = "Download one symbol x month Binance trades zip, verify its sha256 against the .CHECKSUM, store it under raw/."
  role_arn               = aws_iam_role.download.arn
  max_capacity           = var.python_shell_max_capacity
  max_retries            = 0
  timeout                = var.glue_job_timeout_minutes.download
  security_configuration = aws_glue_security_configuration.this.name

  command {
    name            = "pythonshell"
    python_version  = "3.9"
    script_location = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.stage_script["download"].key}"
  }

  execution_property {
    max_concurrent_runs = var.glue_max_concurrent_runs
  }

  default_arguments = {
    "--job-language"                     = "python"
    "--job-bookmark-option"              = "job-bookmark-disable"
    "--enable-continuous-cloudwatch-log" = "true"
    "--continuous-log-logGroup"          = aws_cloudwatch_log_group.glue["continuous"].name
    "--additional-python-modules"        = var.python_shell_additional_modules
    "--extra-py-files"                   = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.python_shell_bundle.key}"
  }
}

resource "aws_glue_job" "unzip" {
  name                   = "market-etl-unzip"
  description            = "Stream the single CSV entry of a raw/ zip (size and ratio capped) into raw_unzipped/ with a multipart upload."
  role_arn               = aws_iam_role.unzip.arn
  max_capacity           = var.python_shell_max_capacity
  max_retries            = 0
  timeout                = var.glue_job_timeout_minutes.unzip
  security_configuration = aws_glue_security_configuration.this.name

  command {
    name            = "pythonshell"
    python_version  = "3.9"
    script_location = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.stage_script["unzip"].key}"
  }

  execution_property {
    max_concurrent_runs = var.glue_max_concurrent_runs
  }

  default_arguments = {
    "--job-language"                     = "python"
    "--job-bookmark-option"              = "job-bookmark-disable"
    "--enable-continuous-cloudwatch-log" = "true"
    "--continuous-log-logGroup"          = aws_cloudwatch_log_group.glue["continuous"].name
    "--additional-python-modules"        = var.python_shell_additional_modules
    "--extra-py-files"                   = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.python_shell_bundle.key}"
  }
}

# =============================================================================
# ETL: Glue 5.0 Spark job
# =============================================================================
#
# Glue 5.0 = Spark 3.5.4 and Python 3.11, the same Spark line as the local
# pyspark pin. The wheel and dagster-pipes are pip-installed with --no-deps:
# Glue provides pyspark and boto3, and the wheel's own dependencies (dagster,
# duckdb, a second pyspark, ...) must not be installed over Glue's runtime;
# dagster-pipes has no dependencies of its own.

resource "aws_glue_job" "etl" {
  name                   = "market-etl-etl"
  description            = "Transform one symbol x month CSV into Parquet under processed/trades/ (year/month/day/symbol), quarantine bad rows under rejected/."
  role_arn               = aws_iam_role.etl.arn
  glue_version           = "5.0"
  worker_type            = var.glue_etl_worker_type
  number_of_workers      = var.glue_etl_worker_count
  max_retries            = 0
  timeout                = var.glue_job_timeout_minutes.etl
  security_configuration = aws_glue_security_configuration.this.name

  command {
    name            = "glueetl"
    python_version  = "3"
    script_location = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.stage_script["etl"].key}"
  }

  execution_property {
    max_concurrent_runs = var.glue_max_concurrent_runs
  }

  default_arguments = {
    "--job-language"        = "python"
    "--job-bookmark-option" = "job-bookmark-disable"
    # Glue 5.0 always logs in real time; the flag is kept so every job reads
    # the same, and --custom-logGroup-prefix sends the 5.0 output/error
    # groups to our managed log groups (logs.tf).
    "--enable-continuous-cloudwatch-log" = "true"
    "--continuous-log-logGroup"          = aws_cloudwatch_log_group.glue["continuous"].name
    "--custom-logGroup-prefix"           = local.glue_log_group_name
    "--enable-metrics"                   = "true"
    "--TempDir"                          = "s3://${aws_s3_bucket.lake.id}/${local.prefix_temp}glue/"
    "--additional-python-modules"        = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.runtime_wheel.key},dagster-pipes==${var.dagster_pipes_version_glue_etl}"
    "--python-modules-installer-option"  = "--no-deps"
  }

  # The managed output/error groups must exist before the first run, or Glue
  # creates unmanaged ones without retention.
  depends_on = [aws_cloudwatch_log_group.glue]
}
