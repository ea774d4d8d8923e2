# The three stage jobs, their scripts and the project wheel.
#
# Dagster launches them with PipesGlueClient (one run per symbol x month
# partition) and passes every run argument; the defaults below are only the
# runtime set-up. Common to all three:
# - job bookmarks disabled: the Dagster partition, not a bookmark, is the unit
#   of idempotency (a bookmark would make a re-run of a processed input read
#   nothing);
# - max_retries = 0: Dagster's RetryPolicy retries, with backoff, and sees
#   every attempt; Glue retrying underneath would hide them;
# - the security configuration (encrypted S3 writes, logs and bookmarks);
# - a timeout, so a stalled run fails instead of holding a slot for 48 hours;
# - max_concurrent_runs > 1, so a backfill's parallel runs are accepted.
#
# The scripts are uploaded from the repo; they import only dagster_pipes and
# the project's core package, never dagster itself.

# =============================================================================
# Artifacts: scripts and wheel
# =============================================================================

resource "aws_s3_object" "download_script" {
  bucket      = aws_s3_bucket.lake.id
  key         = "${local.prefix_artifacts}glue/jobs/download.py"
  source      = "${path.module}/../market_etl/stages/download.py"
  source_hash = filemd5("${path.module}/../market_etl/stages/download.py")
  kms_key_id  = aws_kms_key.lake.arn
}

resource "aws_s3_object" "unzip_script" {
  bucket      = aws_s3_bucket.lake.id
  key         = "${local.prefix_artifacts}glue/jobs/unzip.py"
  source      = "${path.module}/../market_etl/stages/unzip.py"
  source_hash = filemd5("${path.module}/../market_etl/stages/unzip.py")
  kms_key_id  = aws_kms_key.lake.arn
}

resource "aws_s3_object" "etl_script" {
  bucket      = aws_s3_bucket.lake.id
  key         = "${local.prefix_artifacts}glue/jobs/etl.py"
  source      = "${path.module}/../market_etl/stages/etl.py"
  source_hash = filemd5("${path.module}/../market_etl/stages/etl.py")
  kms_key_id  = aws_kms_key.lake.arn
}

# The key keeps the wheel's file name: pip only installs a file named like a
# wheel (name-version-tags.whl).
resource "aws_s3_object" "wheel" {
  bucket      = aws_s3_bucket.lake.id
  key         = local.wheel_key
  source      = local.wheel_source
  source_hash = filemd5(local.wheel_source)
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
# Pipes protocol, "0.1", as the 1.13 orchestrator). Consequences for the code:
# - download.py, unzip.py and everything they import from the wheel must run
#   on 3.9 (no `match`, no `X | Y` unions evaluated at run time, ...);
# - the wheel is added with --extra-py-files, which puts it on sys.path (a
#   pure-Python wheel imports as a zip) instead of pip-installing it: the
#   wheel declares requires-python >= 3.11 and pulls the whole Dagster/Spark
#   stack as dependencies, neither of which a 3.9 job can or should install.
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
    script_location = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.download_script.key}"
  }

  execution_property {
    max_concurrent_runs = var.glue_max_concurrent_runs
  }

  default_arguments = {
    "--job-language"                     = "python"
    "--job-bookmark-option"              = "job-bookmark-disable"
    "--enable-continuous-cloudwatch-log" = "true"
    "--continuous-log-logGroup"          = aws_cloudwatch_log_group.glue["continuous"].name
    "--additional-python-modules"        = "dagster-pipes==${var.dagster_pipes_version_python_shell}"
    "--extra-py-files"                   = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.wheel.key}"
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
    script_location = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.unzip_script.key}"
  }

  execution_property {
    max_concurrent_runs = var.glue_max_concurrent_runs
  }

  default_arguments = {
    "--job-language"                     = "python"
    "--job-bookmark-option"              = "job-bookmark-disable"
    "--enable-continuous-cloudwatch-log" = "true"
    "--continuous-log-logGroup"          = aws_cloudwatch_log_group.glue["continuous"].name
    # isal: ISA-L inflate, ~3x stdlib zlib (core/unzip.py falls back to zlib without it).
    "--additional-python-modules" = "dagster-pipes==${var.dagster_pipes_version_python_shell},isal==${var.isal_version}"
    "--extra-py-files"            = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.wheel.key}"
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
    script_location = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.etl_script.key}"
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
    "--additional-python-modules"        = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.wheel.key},dagster-pipes==${var.dagster_pipes_version_glue_etl}"
    "--python-modules-installer-option"  = "--no-deps"
  }

  # The managed output/error groups must exist before the first run, or Glue
  # creates unmanaged ones without retention.
  depends_on = [aws_cloudwatch_log_group.glue]
}
